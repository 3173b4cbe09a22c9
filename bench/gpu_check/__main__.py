from bench.gpu_check.cli import main

raise SystemExit(main())
