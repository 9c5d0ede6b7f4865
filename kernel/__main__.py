from gvkernel.app import main

raise SystemExit(main())
