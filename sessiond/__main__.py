from sessiond.main import main

raise SystemExit(main())
