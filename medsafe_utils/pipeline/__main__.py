"""python -m medsafe_utils.pipeline: see medsafe_utils.pipeline.run."""

from medsafe_utils.pipeline.run import main

raise SystemExit(main())
