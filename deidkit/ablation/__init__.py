"""The lambda ablation: one knob, the weight of the identity term, turned over a range for FaDeNet and for the
live model, each setting a separately trained model, each evaluated like notebook 04.

* **Cache by configuration.** A sweep point is the full training configuration of its model (a dataclass of
  :mod:`deidkit.train.fadenet` or :mod:`deidkit.train.live`). Its stable JSON is hashed and the model is trained in
  ``cache_dir()/runs/<model>-<hash>``; a second sweep with the same configuration loads it, a changed
  configuration is a different folder. Training is the shared resumable loop, so an interrupted point resumes
  from its last epoch checkpoint. A point whose loss diverged is remembered (``ablation.json``) and not retrained.
* **Evaluation.** Every trained point, the original and the naive baselines go through
  :func:`deidkit.eval.benchmark.run_benchmark` in one call (Rank-1 over the 5 repetitions, true-identity rank,
  original-vs-de-identified verification, SSIM/PSNR, detection rate) plus the 68-landmark displacement of
  :func:`deidkit.eval.temporal.landmark_displacement`. One ``kind="ablation"`` record per (point, recogniser).
* **Curves.** :func:`privacy_utility_curves` orders each family's points by lambda (or baseline strength) so
  that a figure can join them into the family's privacy-utility curve.

Models are plugged in through :class:`SweepModel` (``FaDeNetSweep``, ``LiveSweep``); tests inject small ones.
"""

from deidkit.ablation.figures import (
    baseline_comparison,
    curves_figure,
    lambda_sequence_figure,
    lambda_trend,
    privacy_utility_curves,
)
from deidkit.ablation.models import (
    MODELS,
    FaDeNetPoint,
    FaDeNetSweep,
    LiveSweep,
    NamedDeidentifier,
    SweepModel,
    default_models,
    point_name,
    subset_training_images,
)
from deidkit.ablation.runs import META_NAME, TrainedModel, ensure_model
from deidkit.ablation.sweep import (
    BASELINE_FAMILIES,
    AblationConfig,
    SweepResult,
    build_records,
    describe_baseline,
    evaluate_sweep,
    landmark_indices,
    run_sweep,
    sample_indices,
    sweep_configs,
    sweep_plan,
    train_sweep,
)
from deidkit.cache import (
    CACHE_VERSION,
    NON_TRAINING_FIELDS,
    completed_epochs,
    config_hash,
    config_payload,
    run_dir_for,
    runs_root,
    stable_json,
)

__all__ = ["BASELINE_FAMILIES", "CACHE_VERSION", "META_NAME", "MODELS", "NON_TRAINING_FIELDS", "AblationConfig",
           "FaDeNetPoint", "FaDeNetSweep", "LiveSweep", "NamedDeidentifier", "SweepModel", "SweepResult",
           "TrainedModel", "baseline_comparison", "build_records", "completed_epochs", "config_hash",
           "config_payload", "curves_figure", "default_models", "describe_baseline", "ensure_model",
           "evaluate_sweep", "lambda_sequence_figure", "lambda_trend", "landmark_indices", "point_name",
           "privacy_utility_curves", "run_dir_for", "run_sweep", "runs_root", "sample_indices", "stable_json",
           "subset_training_images", "sweep_configs", "sweep_plan", "train_sweep"]
