from gvshell.app import main

raise SystemExit(main())
