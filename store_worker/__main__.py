from shared.runner import run_worker
from store_worker.worker import StoreWorker

raise SystemExit(run_worker(StoreWorker))
