"""The FHIR R4 Patient compartment, as the access decision reads it: which search
parameters put a resource in it.

Derived from the search package's CompartmentDefinitions (``fhir_server/search/
compartments.json``, generated from CompartmentDefinition/patient of R4 4.0.1), so search
and access control cannot disagree. A resource of type T is in Patient/p's compartment
when one of PATIENT_COMPARTMENT[T] references Patient/p; the Patient resource itself is in
its own compartment. Types not listed are in no patient's compartment.
"""

from __future__ import annotations

from fhir_server.search.compartments import compartments

_PATIENT = compartments()["Patient"]

# [D] Types in no R4 patient compartment that are nevertheless a patient's data, with the
# parameter naming the patient. Task: R4 leaves it out of CompartmentDefinition/patient,
# yet Task.for names the patient and a safety-alert Task carries their name, identifier
# and phone (BRIEF "Shared contract: safety alerts") -- outside the compartment any
# user/ token with Task in scope would read every patient's alerts (issue 10 item 2).
# Access only: a compartment search ``Patient/p/Task`` stays as R4 defines it (empty).
ACCESS_ONLY: dict[str, tuple[str, ...]] = {"Task": ("subject",)}

PATIENT_COMPARTMENT: dict[str, tuple[str, ...]] = {
    **{rtype: _PATIENT.params_for(rtype) for rtype in _PATIENT.types if _PATIENT.params_for(rtype)},
    **ACCESS_ONLY,
}
