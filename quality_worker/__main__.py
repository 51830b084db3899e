from quality_worker.worker import QualityWorker
from shared.runner import run_worker

raise SystemExit(run_worker(QualityWorker))
