"""Human studies of de-identification: study folders, the participant form, response files, simulated
participants and the analysis (see the modules' docstrings and ``notebooks/06_human_study_form.ipynb``)."""

from deidkit.study.analysis import (
    attention_summary,
    human_vs_machine,
    identification_confusion,
    load_machine_rank1,
    metrics_source,
    plot_identification_confusions,
    similarity_ratings,
    study_overview,
    success_rates,
)
from deidkit.study.design import (
    GALLERY_PX,
    ORIGINAL,
    PAIR_PX,
    STIMULUS_PX,
    TASKS,
    Plan,
    Study,
    StudyConfig,
    StudyDesign,
    StudyError,
    Subject,
    Trial,
    build_lfw_study,
    build_study,
    build_study_from_images,
    default_study_dir,
    export_study,
    load_study,
    make_stimuli,
    required_px,
)
from deidkit.study.form import StudyForm
from deidkit.study.participants import InvalidParticipantId, normalize_participant_id
from deidkit.study.response_writer import ParticipantLocked, ResponseWriter
from deidkit.study.responses import (
    Problem,
    ResponseFileError,
    ResponseSet,
    load_responses,
    read_participant_log,
)
from deidkit.study.simulate import (
    SimulatedClock,
    accuracy_for,
    accuracy_table,
    fresh_simulation,
    run_simulated_participant,
    simulate_participants,
)
from deidkit.study.static_html import widget_html
from deidkit.study.voila_page import query_parameter, running_in_voila

__all__ = [
    "ORIGINAL", "TASKS", "InvalidParticipantId", "ParticipantLocked", "Plan", "Problem", "ResponseFileError",
    "ResponseSet", "ResponseWriter", "SimulatedClock", "Study", "StudyDesign", "StudyError", "StudyForm", "Subject",
    "Trial", "accuracy_for", "attention_summary", "build_lfw_study", "build_study", "build_study_from_images",
    "export_study", "human_vs_machine", "identification_confusion", "load_machine_rank1", "load_responses",
    "load_study", "make_stimuli", "normalize_participant_id", "plot_identification_confusions",
    "read_participant_log", "run_simulated_participant", "similarity_ratings", "simulate_participants",
    "study_overview", "success_rates", "widget_html", "default_study_dir", "query_parameter", "running_in_voila",
    "accuracy_table", "fresh_simulation", "StudyConfig", "metrics_source", "STIMULUS_PX", "PAIR_PX", "GALLERY_PX",
    "required_px",
]
