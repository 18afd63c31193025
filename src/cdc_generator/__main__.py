from cdc_generator.cli import main

raise SystemExit(main())
