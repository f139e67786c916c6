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

# Types R4's CompartmentDefinition leaves out that hold one patient's data in this
# programme: the plan's explanation (GuidanceResponse.subject) and the safety-alert and
# referral Tasks (Task.for). Outside every compartment they would be open to any
# clinician's user/ scopes and closed to the patient (issue 11 item 5: the patient reads
# the explanation of its own plan). Access only; compartment *search* keeps R4's list.
ACCESS_ONLY: dict[str, tuple[str, ...]] = {
    "GuidanceResponse": ("subject",),
    "Task": ("subject",),
}

PATIENT_COMPARTMENT: dict[str, tuple[str, ...]] = {
    **{
        rtype: _PATIENT.params_for(rtype)
        for rtype in _PATIENT.types
        if _PATIENT.params_for(rtype)
    },
    **ACCESS_ONLY,
}
