from hvdesk.launcher import main

raise SystemExit(main())
