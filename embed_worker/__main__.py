from embed_worker.worker import EmbedWorker
from shared.runner import run_worker

raise SystemExit(run_worker(EmbedWorker))
