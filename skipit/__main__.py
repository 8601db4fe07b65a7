from skipit.cli import main

raise SystemExit(main())
