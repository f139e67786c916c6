"""Pure personalisation: a patient snapshot in, a weekly plan decision out (no I/O).

Public API::

    from plan_engine import PatientSnapshot, decide_plan
    decision = decide_plan(snapshot, as_of=date(2026, 3, 2))
    decision.resources   # FHIR R4 dicts: Goal, CarePlan, Flag, DetectedIssue,
                         # Communication, GuidanceResponse, Provenance
    decision.to_json()   # byte-identical for the same snapshot and versions
"""

from plan_engine.casebase import CaseBase, load_case_base
from plan_engine.catalogue import Catalogue, load_catalogue
from plan_engine.decision import (
    ClinicianMessage,
    DiffEntry,
    EducationDecision,
    ExerciseDecision,
    PlanDecision,
    Reason,
    RetrievedCase,
    SafetyFinding,
    StepGoalDecision,
    Versions,
)
from plan_engine.engine import ENGINE_VERSION, decide_plan, versions
from plan_engine.history import bounded_snapshot
from plan_engine.snapshot import (
    BaselineScores,
    ClinicianOverrides,
    ConsentState,
    EducationRecord,
    ExerciseLog,
    PatientGoals,
    PatientSnapshot,
    PlannedExercise,
    PreviousPlan,
    RaisedFinding,
    RedFlagAnswers,
    StepDay,
    WeeklyReport,
)
from plan_engine.validation import SnapshotError

__all__ = [
    "ENGINE_VERSION",
    "BaselineScores",
    "CaseBase",
    "Catalogue",
    "ClinicianMessage",
    "ClinicianOverrides",
    "ConsentState",
    "DiffEntry",
    "EducationDecision",
    "EducationRecord",
    "ExerciseDecision",
    "ExerciseLog",
    "PatientGoals",
    "PatientSnapshot",
    "PlanDecision",
    "PlannedExercise",
    "PreviousPlan",
    "RaisedFinding",
    "Reason",
    "RedFlagAnswers",
    "RetrievedCase",
    "SafetyFinding",
    "SnapshotError",
    "StepDay",
    "StepGoalDecision",
    "Versions",
    "WeeklyReport",
    "bounded_snapshot",
    "decide_plan",
    "load_case_base",
    "load_catalogue",
    "versions",
]
