"""Runs inside the RecBole 1.2.1 virtualenv (setup_recbole_venv.sh); called by recbole_side_by_side.py.

One RecBole model on MovieLens-100k under the protocol of mtrlrec's
movielens_next_item table: leave-last-two-out by time (``LS: valid_and_test``,
``order: TO``), full ranking, HR/NDCG/MRR@10, early stopping on valid MRR@10
(patience ``stopping_step``), Adam lr 1e-3, RecBole 1.2.1's model defaults.
Writes a JSON with test/valid metrics, epochs and the wall and CPU time of every
training epoch (``Trainer._train_epoch`` timed from outside), and for ``Pop``
also RecBole's per-item counts beside the true training counts.

Usage: python _recbole_worker.py MODEL SEED MAX_EPOCHS THREADS DATA_DIR OUT.json
  MAX_EPOCHS = -M: time the first M batches of an epoch only (extrapolated to the epoch)
  DATA_DIR holds ml-100k/ml-100k.inter (mtrlrec data movielens).
"""

import json
import os
import sys
import tempfile
import time
import warnings

warnings.simplefilter("ignore")
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # RecBole's own checkpoints hold its Config

model_name, seed, max_epochs, threads, data_dir, out = (
    sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(threads)
from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import get_model, get_trainer, init_seed  # noqa: E402

tmp = tempfile.mkdtemp()
data_dir, out = os.path.abspath(data_dir), os.path.abspath(out)
os.chdir(tmp)  # RecBole writes log/ and log_tensorboard/ into the working directory
sequential = model_name in ("GRU4Rec", "SASRec")
cfg = {
    "data_path": data_dir, "dataset": "ml-100k", "seed": seed, "reproducibility": True,
    "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
    "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
    "metrics": ["Hit", "NDCG", "MRR"], "topk": [10], "valid_metric": "MRR@10",
    "epochs": max_epochs, "stopping_step": 5, "learning_rate": 0.001,
    "checkpoint_dir": tmp, "show_progress": False, "worker": 0, "device": "cpu", "use_gpu": False,
    "log_wandb": False, "state": "WARNING",
}
if sequential:
    cfg.update({"loss_type": "CE", "train_neg_sample_args": None, "MAX_ITEM_LIST_LENGTH": 50})
elif model_name == "BPR":
    cfg.update({"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}})
elif model_name == "Pop":
    # RecBole's default uniform negative sampling would put sampled negatives into
    # Pop's (pointwise) training batches, where they are counted as interactions
    # too; without it only the per-batch counting flaw remains.
    neg = os.environ.get("RECBOLE_POP_NEGATIVES", "0") == "1"
    cfg.update({"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1} if neg else None})
config = Config(model=model_name, config_dict=cfg)
init_seed(seed, True)
dataset = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, dataset)
init_seed(seed, True)
model = get_model(config["model"])(config, train_data.dataset).to(config["device"])
trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
epoch_times, epoch_cpu = [], []
_orig = trainer._train_epoch


def timed(*a, **k):
    # wall time, and CPU time of this process (with one torch thread, the compute
    # time itself: robust to other processes sharing the machine)
    t, c = time.perf_counter(), time.process_time()
    r = _orig(*a, **k)
    epoch_times.append(time.perf_counter() - t)
    epoch_cpu.append(time.process_time() - c)
    return r


if max_epochs < 0:
    # timing only: -M = the first M training batches of one epoch, extrapolated to
    # the epoch's len(train_data) batches (RecBole's SASRec epoch is minutes of CPU)
    import itertools

    n_batches, m = len(train_data), -max_epochs
    model.train()
    c, t = time.process_time(), time.perf_counter()
    trainer._train_epoch(list(itertools.islice(iter(train_data), m)), 0, show_progress=False)
    cpu, wall = time.process_time() - c, time.perf_counter() - t
    res = {"model": model_name, "seed": seed, "timing_batches": m, "batches_per_epoch": n_batches,
           "epoch_cpu_seconds": [cpu / m * n_batches], "epoch_seconds": [wall / m * n_batches],
           "threads": threads, "torch": torch.__version__, "test": {}, "epochs": 0, "wall": wall}
    with open(out, "w") as f:
        json.dump(res, f)
    print(json.dumps(res))
    sys.exit(0)
trainer._train_epoch = timed
t0 = time.time()
best_valid, valid_result = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
res = {"model": model_name, "seed": seed, "test": {k: float(v) for k, v in test_result.items()},
       "valid": {k: float(v) for k, v in valid_result.items()}, "epochs": len(epoch_times),
       "epoch_seconds": epoch_times, "epoch_cpu_seconds": epoch_cpu, "wall": time.time() - t0, "threads": threads,
       "torch": torch.__version__, "n_train": len(train_data.dataset)}
if model_name == "Pop":
    # RecBole's Pop: item_cnt[item, :] += 1 counts an item once per batch however often it occurs.
    inter = train_data.dataset.inter_feat
    iid = inter[config["ITEM_ID_FIELD"]].numpy()
    true = np.bincount(iid, minlength=dataset.item_num)
    theirs = model.item_cnt.squeeze(-1).numpy().astype(np.int64)
    raw = dataset.id2token(config["ITEM_ID_FIELD"], np.arange(dataset.item_num))
    res["pop"] = {"raw_item": [str(r) for r in raw], "recbole_count": theirs.tolist(),
                  "true_count": true.tolist(), "batch_size": config["train_batch_size"]}
with open(out, "w") as f:
    json.dump(res, f)
print(json.dumps({k: res[k] for k in ("model", "seed", "test", "epochs", "wall")}))
