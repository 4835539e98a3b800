from hvdesk.cli.main import main

raise SystemExit(main())
