from mdlbench.cli import entry

entry()
