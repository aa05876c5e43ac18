from mdlbench.cli import main

raise SystemExit(main())
