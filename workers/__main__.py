from workers.celery_app import worker_main

raise SystemExit(worker_main())
