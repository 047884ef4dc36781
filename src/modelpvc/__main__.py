from modelpvc.cli.main import main

raise SystemExit(main())
