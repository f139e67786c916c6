"""Scoring rules at their boundaries: bands, reverse items, dichotomised items, missing items."""

from datetime import datetime

import pytest
from qr_builder import AS_OF

from mappings import ScoringError, score_response


def scores_of(response) -> dict:
    return {s.score_id: s for s in score_response(response, AS_OF)}


def startback(items_1_to_8: list[int], item_9) -> dict:
    answers = {f"sbst-{i}": v for i, v in enumerate(items_1_to_8, 1)}
    answers["sbst-9"] = item_9
    return answers


@pytest.mark.parametrize(
    "physical,psychosocial,item_9,total,subscale,group",
    [
        # total 3 -> low, total 4 -> not low (Keele: total <= 3 is low risk)
        ([1, 1, 1, 0], [0, 0, 0, 0], "not-at-all", 3, 0, "sbst-low"),
        ([1, 1, 1, 1], [0, 0, 0, 0], "not-at-all", 4, 0, "sbst-medium"),
        # total >= 4: subscale 3 -> medium, subscale 4 -> high
        ([1, 1, 1, 1], [1, 1, 1, 0], "not-at-all", 7, 3, "sbst-medium"),
        ([1, 1, 1, 1], [1, 1, 1, 1], "not-at-all", 8, 4, "sbst-high"),
        # item 9 counts only for "very much" and "extremely"
        ([1, 1, 1, 1], [1, 1, 1, 0], "moderately", 7, 3, "sbst-medium"),
        ([1, 1, 1, 1], [1, 1, 1, 0], "very-much", 8, 4, "sbst-high"),
        ([1, 1, 1, 1], [1, 1, 1, 0], "extremely", 8, 4, "sbst-high"),
        # a high subscale with a low total is still low risk
        ([0, 0, 0, 0], [1, 1, 0, 0], "very-much", 3, 3, "sbst-low"),
    ],
)
def test_startback_risk_groups(
    make_response, physical, psychosocial, item_9, total, subscale, group
):
    scores = scores_of(
        make_response("selfback-baseline", startback(physical + psychosocial, item_9))
    )
    assert scores["startback-total"].value == total
    assert scores["startback-psychosocial"].value == subscale
    assert scores["startback-risk"].value == group
    assert scores["startback-risk"].value_kind == "band"


def test_startback_with_a_missing_item_is_not_scored(make_response):
    answers = startback([1] * 8, "extremely")
    del answers["sbst-3"]
    scores = scores_of(make_response("selfback-baseline", answers))
    assert not {"startback-total", "startback-psychosocial", "startback-risk"} & set(scores)


def phq(total: int, items: int = 8) -> dict:
    """PHQ answers (ordinals 0-3) adding up to total over the first `items` items."""
    values = [min(3, max(0, total - 3 * i)) for i in range(items)]
    assert sum(values) == total
    return {f"phq-{i}": v for i, v in enumerate(values, 1)}


@pytest.mark.parametrize(
    "total,band",
    [
        (0, "phq-none-minimal"),
        (4, "phq-none-minimal"),
        (5, "phq-mild"),
        (9, "phq-mild"),
        (10, "phq-moderate"),
        (14, "phq-moderate"),
        (15, "phq-moderately-severe"),
        (19, "phq-moderately-severe"),
        (20, "phq-severe"),
        (24, "phq-severe"),
    ],
)
def test_phq8_bands(make_response, total, band):
    score = scores_of(make_response("selfback-mental-health", phq(total)))["phq8-total"]
    assert (score.value, score.band) == (total, band)


@pytest.mark.parametrize(
    "first_two,band",
    [
        ((1, 1), "phq2-negative"),
        ((2, 0), "phq2-negative"),
        ((2, 1), "phq2-positive"),
        ((3, 3), "phq2-positive"),
    ],
)
def test_phq2_screen_cut_point_is_three(make_response, first_two, band):
    answers = {"phq-1": first_two[0], "phq-2": first_two[1]}
    score = scores_of(make_response("selfback-weekly", answers))["phq2-total"]
    assert score.band == band
    assert score.codes[0].code == "55758-7"


def test_phq8_prorates_one_missing_item_and_drops_two(make_response):
    answers = phq(14)  # 3,3,3,3,2,0,0,0
    del answers["phq-8"]  # 7 answered, sum 14 -> 14 * 8 / 7 = 16
    score = scores_of(make_response("selfback-mental-health", answers))["phq8-total"]
    assert (score.value, score.prorated, score.items_missing) == (16, True, ("phq-8",))
    assert score.band == "phq-moderately-severe"
    del answers["phq-7"]
    assert "phq8-total" not in scores_of(make_response("selfback-mental-health", answers))


def test_pss10_reverse_items_4_5_7_8(make_response):
    all_zero = {f"pss-{i}": 0 for i in range(1, 11)}
    assert scores_of(make_response("selfback-mental-health", all_zero))["pss10-total"].value == 16
    all_four = {f"pss-{i}": 4 for i in range(1, 11)}
    assert scores_of(make_response("selfback-mental-health", all_four))["pss10-total"].value == 24
    only_item_4 = {**all_zero, "pss-4": 4}
    assert (
        scores_of(make_response("selfback-mental-health", only_item_4))["pss10-total"].value == 12
    )


def test_pss4_from_the_weekly_items_reverses_items_4_and_5(make_response):
    answers = {"pss-2": 1, "pss-4": 1, "pss-5": 0, "pss-10": 2}
    scores = scores_of(make_response("selfback-weekly", answers))
    assert scores["pss4-total"].value == 1 + 3 + 4 + 2
    assert "pss10-total" not in scores  # six of ten items missing


def test_bipq_reverse_items_3_4_7(make_response):
    answers = {f"bipq-{i}": 0 for i in range(1, 9)}
    assert scores_of(make_response("selfback-pain-perception", answers))["bipq-total"].value == 30
    answers["bipq-3"] = 10
    assert scores_of(make_response("selfback-pain-perception", answers))["bipq-total"].value == 20


def test_bipq_needs_every_item(make_response):
    answers = {f"bipq-{i}": 5 for i in range(1, 8)}
    assert "bipq-total" not in scores_of(make_response("selfback-pain-perception", answers))


@pytest.mark.parametrize(
    "total,band", [(29, "pcs-below-threshold"), (30, "pcs-clinically-relevant")]
)
def test_pcs_clinical_threshold(make_response, total, band):
    values = [min(4, max(0, total - 4 * i)) for i in range(13)]
    scores = scores_of(
        make_response("selfback-pain-perception", {f"pcs-{i}": v for i, v in enumerate(values, 1)})
    )
    assert (scores["pcs-total"].value, scores["pcs-total"].band) == (total, band)


def test_pcs_subscales_use_their_own_items(make_response):
    answers = {f"pcs-{i}": 0 for i in range(1, 14)}
    answers.update({"pcs-8": 4, "pcs-6": 2, "pcs-12": 1})
    scores = scores_of(make_response("selfback-pain-perception", answers))
    assert scores["pcs-rumination"].value == 4
    assert scores["pcs-magnification"].value == 2
    assert scores["pcs-helplessness"].value == 1
    assert scores["pcs-total"].value == 7


def test_rmdq_prorates_up_to_two_missing_items(make_response):
    answers = {f"rmdq-{i}": i <= 11 for i in range(1, 25)}
    assert scores_of(make_response("selfback-baseline", answers))["rmdq-total"].value == 11
    del answers["rmdq-23"], answers["rmdq-24"]  # 11 yes of 22 -> 11 * 24 / 22 = 12
    score = scores_of(make_response("selfback-baseline", answers))["rmdq-total"]
    assert (score.value, score.prorated) == (12, True)
    del answers["rmdq-22"]
    assert "rmdq-total" not in scores_of(make_response("selfback-baseline", answers))


def test_prorating_rounds_half_up(make_response):
    answers = {f"pseq-{i}": 3 for i in range(1, 9)}
    answers["pseq-8"] = 4  # 8 answered, sum 25 -> 25 * 10 / 8 = 31.25 -> 31
    assert scores_of(make_response("selfback-baseline", answers))["pseq-total"].value == 31
    answers["pseq-7"] = 4  # sum 26 -> 32.5 -> 33
    assert scores_of(make_response("selfback-baseline", answers))["pseq-total"].value == 33


def test_pseq2_is_items_5_and_9(make_response):
    scores = scores_of(make_response("selfback-weekly", {"pseq-5": 6, "pseq-9": 2}))
    assert scores["pseq2-total"].value == 8
    assert "pseq-total" not in scores


def test_fabq_pa_leaves_item_1_unscored(make_response):
    answers = {"fabq-1": 6, "fabq-2": 1, "fabq-3": 2, "fabq-4": 3, "fabq-5": 4}
    assert scores_of(make_response("selfback-baseline", answers))["fabq-pa-total"].value == 10


def test_nrs_average_and_worst_share_loinc_but_keep_their_own_code(make_response):
    scores = scores_of(
        make_response("selfback-baseline", {"nrs-pain-average": 4, "nrs-pain-worst": 7})
    )
    average, worst = scores["nrs-pain-average"], scores["nrs-pain-worst"]
    assert (average.value, worst.value) == (4, 7)
    assert average.codes[0].code == worst.codes[0].code == "72514-3"
    assert average.codes[1].code != worst.codes[1].code


def test_psfs_is_the_mean_of_the_rated_activities(make_response):
    both = {
        "psfs-1-activity": "gardening",
        "psfs-1-score": 3,
        "psfs-2-activity": "running",
        "psfs-2-score": 6,
    }
    assert scores_of(make_response("selfback-baseline", both))["psfs-mean"].value == 4.5
    one = {"psfs-1-activity": "gardening", "psfs-1-score": 3}
    score = scores_of(make_response("selfback-baseline", one))["psfs-mean"]
    assert (score.value, score.value_kind) == (3.0, "decimal")


def test_eq5d5l_profile_and_vas(make_response):
    answers = {"eq5d-1": 1, "eq5d-2": 2, "eq5d-3": 3, "eq5d-4": 2, "eq5d-5": 1, "eq5d-vas": 70}
    scores = scores_of(make_response("selfback-everyday-health", answers))
    assert (scores["eq5d5l-profile"].value, scores["eq-vas"].value) == ("12321", 70)
    del answers["eq5d-2"]
    assert "eq5d5l-profile" not in scores_of(make_response("selfback-everyday-health", answers))


def test_answers_carrying_their_own_ordinal_extension_are_accepted(make_response):
    response = make_response("selfback-mental-health", {"phq-1": 0, "phq-2": 0})
    coding = response["item"][0]["item"][0]["answer"][0]["valueCoding"]
    coding.update(system="http://example.org/other-phq-answers", code="x")
    coding["extension"] = [
        {"url": "http://hl7.org/fhir/StructureDefinition/ordinalValue", "valueDecimal": 3}
    ]
    assert scores_of(response)["phq2-total"].value == 3


@pytest.mark.parametrize(
    "answers,message",
    [
        ({"nrs-pain-average": 11}, "outside"),
        ({"nrs-pain-average": -1}, "outside"),
        ({"pseq-5": 7, "pseq-9": 1}, "outside"),
    ],
)
def test_out_of_range_answers_raise(make_response, answers, message):
    qid = "selfback-weekly"
    with pytest.raises(ScoringError, match=message) as caught:
        score_response(make_response(qid, answers), AS_OF)
    assert caught.value.code == "value"


def test_unknown_answer_code_raises(make_response):
    response = make_response("selfback-mental-health", {"phq-1": 0, "phq-2": 0})
    response["item"][0]["item"][0]["answer"][0]["valueCoding"]["code"] = "LA0000-0"
    with pytest.raises(ScoringError, match="no ordinal"):
        score_response(response, AS_OF)


def test_two_answers_to_a_scored_item_raise(make_response):
    response = make_response("selfback-weekly", {"nrs-pain-average": 3})
    pain = next(g for g in response["item"] if g["linkId"] == "weekly-pain")["item"][0]
    pain["answer"].append({"valueInteger": 4})
    with pytest.raises(ScoringError):
        score_response(response, AS_OF)


@pytest.mark.parametrize("status", ["in-progress", "stopped", "entered-in-error"])
def test_unfinished_responses_give_no_scores(make_response, status):
    assert (
        score_response(
            make_response("selfback-weekly", {"nrs-pain-average": 3}, status=status), AS_OF
        )
        == []
    )


def test_as_of_needs_a_time_zone(make_response):
    with pytest.raises(ScoringError):
        score_response(
            make_response("selfback-weekly", {"nrs-pain-average": 3}), datetime(2026, 11, 21)
        )


def test_effective_time_is_authored_and_version_is_recorded(make_response):
    [score] = score_response(make_response("selfback-weekly", {"nrs-pain-average": 3}), AS_OF)
    assert score.effective == "2026-11-20T09:30:00+01:00"
    assert score.algorithm_version == "1.0.0"
