"""Cohort rules on made-up patients whose expected inclusion and values are written by hand."""

import pandas as pd
import pytest
import yaml

from hand_patients import T0_DEFAULT, Stay, T, tables
from hdank.cohort import RULE_IDS, build_cohort

STUDY = yaml.safe_load(open("config/config.yaml"))["study"]
POSITIVE = ["positive", "detected"]

ANAKINRA_HD = [("2021-01-12 12:00", "anakinra", 200.0, None, "IV"),
               ("2021-01-12 18:00", "anakinra", 200.0, None, "IV")]  # 400 mg = 5 mg/kg x 80 kg


def run(*stays):
    return build_cohort(tables(list(stays)), STUDY, POSITIVE)


def status(*stays):
    result = run(*stays)
    return dict(zip(result.status["admission_id"], result.status["status"]))


def only(stay):
    result = run(stay)
    assert len(result.cohort) == 1, result.status
    return result.cohort.iloc[0]


def test_default_stay_is_eligible_soc_with_hand_values():
    row = only(Stay(1))
    assert row["t0"] == T0_DEFAULT
    assert row["treated"] == 0
    assert row["time"] == 28.0 and row["event"] == 0  # discharged home alive
    assert row["cov_num_age"] == 61.0
    assert row["cov_num_bmi"] == pytest.approx(80 / 1.75**2)
    assert row["cov_num_crp"] == 80.0
    assert pd.isna(row["cov_num_ferritin"])  # missing kept missing
    assert row["cov_num_steroid_dose"] == 6.0
    assert row["cov_num_days_admit_to_t0"] == pytest.approx(28 / 24)
    assert row["cov_num_days_steroid_to_t0"] == pytest.approx(26 / 24)
    assert row["cov_num_days_onset_to_t0"] == pytest.approx(8.5)
    assert row["cov_cat_period"] == "2021Q1"
    assert row["cov_bin_obesity"] == 0  # BMI 26.1
    assert pd.isna(row["anakinra_start_day"])
    assert row["discharge_day"] == pytest.approx(13 + 22 / 24)  # T0 11 Jan 12:00 to 25 Jan 10:00


def test_unknown_sex_is_missing():
    assert pd.isna(only(Stay(1, sex="U"))["cov_cat_sex"])
    assert only(Stay(1, sex="F"))["cov_cat_sex"] == "F"


def test_hdank_patient():
    row = only(Stay(1, meds=Stay(1).meds + ANAKINRA_HD))
    assert row["treated"] == 1
    assert row["anakinra_start_day"] == 1.0


@pytest.mark.parametrize("rule, stay", [
    ("study_period", Stay(1, admit="2019-12-01 08:00")),
    ("adult", Stay(1, birth_date="2003-01-11")),  # 17 on admission day 2021-01-10
    ("covid_confirmed", Stay(1, icd10=[("J12.8", None)], labs=[("2021-01-10 09:00", "sars_cov2_pcr", None, "negative")])),
    ("niv_after_steroid", Stay(1, support=[("oxygen", "2021-01-10 09:00", None)])),
    ("steroid_dose", Stay(1, meds=[("2021-01-10 10:00", "corticosteroid", 4.0, 1.0, "IV")])),
    ("invasive_before_t0", Stay(1, support=Stay(1).support + [("invasive", "2021-01-11 11:00", None)])),
    ("immunomodulator_before_t0", Stay(1, meds=Stay(1).meds + [("2021-01-11 09:00", "other_immunomodulator", 8.0, None, "IV")])),
    ("immunomodulator_before_t0", Stay(1, meds=Stay(1).meds + [("2021-01-11 09:00", "anakinra", 400.0, None, "IV")])),
    ("anakinra_not_high_dose", Stay(1, meds=Stay(1).meds + [("2021-01-12 12:00", "anakinra", 100.0, None, "SC")])),
    ("anakinra_not_high_dose", Stay(1, meds=Stay(1).meds + [("2021-01-12 12:00", "anakinra", 399.0, None, "IV")])),
    ("anakinra_late", Stay(1, meds=Stay(1).meds + [("2021-01-14 12:00", "anakinra", 400.0, None, "IV")])),
    ("no_followup", Stay(1, status="in_hospital", discharge=None, labs=[], meds=Stay(1).meds[:2], support=[
        ("oxygen", "2021-01-10 09:00", "2021-01-11 12:00"), ("niv", "2021-01-11 12:00", None)])),
])
def test_each_rule_excludes_its_patient(rule, stay):
    assert status(stay) == {1: rule}


def test_attrition_counts_rules_in_protocol_order():
    stays = [Stay(1), Stay(2, admit="2019-12-01 08:00"), Stay(3, birth_date="2010-01-01"),
             Stay(4, support=[("oxygen", "2021-01-10 09:00", None)])]
    att = run(*stays).attrition
    assert list(att["rule"]) == ["admissions", *RULE_IDS]
    assert att.set_index("rule")["excluded"].to_dict() == {
        "admissions": 0, "study_period": 1, "adult": 1, "covid_confirmed": 0, "niv_after_steroid": 1,
        **{r: 0 for r in RULE_IDS[4:]}}
    assert att["remaining"].iloc[-1] == 1


def test_steroid_and_niv_at_the_same_minute_is_not_t0():
    same = Stay(1, support=[("niv", "2021-01-10 10:00", "2021-01-12 10:00")])
    assert status(same) == {1: "niv_after_steroid"}
    later = Stay(1, support=[("niv", "2021-01-10 10:00", "2021-01-10 12:00"), ("niv", "2021-01-11 08:00", None)])
    assert only(later)["t0"] == T("2021-01-11 08:00")


def test_hdank_exactly_at_grace_end_and_one_minute_later():
    at = Stay(1, meds=Stay(1).meds + [("2021-01-13 12:00", "anakinra", 400.0, None, "IV")])
    assert only(at)["treated"] == 1 and only(at)["anakinra_start_day"] == 2.0
    late = Stay(1, meds=Stay(1).meds + [("2021-01-13 12:01", "anakinra", 400.0, None, "IV")])
    assert status(late) == {1: "anakinra_late"}
    ext = run(late).extended
    assert list(ext["reason"]) == ["anakinra_late"] and ext["treated"].iloc[0] == 1


def test_death_at_day_28_exactly_and_one_minute_later():
    exact = only(Stay(1, status="died", discharge="2021-02-08 12:00", death="2021-02-08 12:00"))
    assert (exact["event"], exact["time"]) == (1, 28.0)
    later = only(Stay(1, status="died", discharge="2021-02-08 12:01", death="2021-02-08 12:01"))
    assert (later["event"], later["time"]) == (0, 28.0)


def test_death_on_day_3():
    row = only(Stay(1, status="died", discharge="2021-01-14 12:00", death="2021-01-14 12:00"))
    assert (row["event"], row["time"]) == (1, 3.0)


def test_discharged_home_on_day_10_is_alive_at_28():
    row = only(Stay(1, discharge="2021-01-21 12:00"))
    assert (row["event"], row["time"], row["discharge_day"]) == (0, 28.0, 10.0)


def test_transfer_on_day_5_is_censored_at_5():
    row = only(Stay(1, status="transfer", discharge="2021-01-16 12:00"))
    assert (row["event"], row["time"]) == (0, 5.0)


def test_still_in_hospital_is_censored_at_last_record():
    stay = Stay(1, status="in_hospital", discharge=None,
                labs=Stay(1).labs + [("2021-01-18 00:00", "crp", 20.0, None)])
    row = only(stay)
    assert (row["event"], row["time"]) == (0, 6.5)


def test_two_stays_keep_the_first():
    first = Stay(1, patient_id=7)
    second = Stay(2, patient_id=7, admit="2021-03-10 08:00", discharge="2021-03-25 10:00",
                  meds=[("2021-03-10 10:00", "corticosteroid", 6.0, 1.0, "IV")],
                  support=[("niv", "2021-03-11 12:00", None)], labs=[])
    assert status(first, second) == {1: "eligible", 2: "first_stay"}


def test_first_stay_counts_only_stays_meeting_inclusion():
    not_covid = Stay(1, patient_id=7, icd10=[], labs=[])
    second = Stay(2, patient_id=7, admit="2021-03-10 08:00", discharge="2021-03-25 10:00",
                  meds=[("2021-03-10 10:00", "corticosteroid", 6.0, 1.0, "IV")],
                  support=[("niv", "2021-03-11 12:00", None)], labs=[])
    assert status(not_covid, second) == {1: "covid_confirmed", 2: "eligible"}


def test_weight_missing_uses_400_mg_rule():
    enough = Stay(1, weight_kg=None, meds=Stay(1).meds + [("2021-01-12 12:00", "anakinra", 400.0, None, "IV")])
    assert only(enough)["treated"] == 1 and pd.isna(only(enough)["cov_num_bmi"])
    short = Stay(1, weight_kg=None, meds=Stay(1).meds + [("2021-01-12 12:00", "anakinra", 390.0, None, "IV")])
    assert status(short) == {1: "anakinra_not_high_dose"}


def test_heavy_patient_needs_5_mg_per_kg():
    heavy = Stay(1, weight_kg=120.0, meds=Stay(1).meds + ANAKINRA_HD)  # 400 < 600 mg
    assert status(heavy) == {1: "anakinra_not_high_dose"}
    # doses beyond 24 h from the first do not count
    split = Stay(1, weight_kg=120.0, meds=Stay(1).meds + ANAKINRA_HD + [("2021-01-13 12:01", "anakinra", 200.0, None, "IV")])
    assert status(split) == {1: "anakinra_not_high_dose"}


def test_steroid_dose_equivalence_and_daily_sum():
    methylpred = Stay(1, meds=[("2021-01-10 10:00", "corticosteroid", 32.0, 0.1875, "IV")])
    assert only(methylpred)["cov_num_steroid_dose"] == 6.0
    two_halves = Stay(1, meds=[("2021-01-10 10:00", "corticosteroid", 3.0, 1.0, "PO"),
                               ("2021-01-10 20:00", "corticosteroid", 3.0, 1.0, "PO")])
    assert only(two_halves)["cov_num_steroid_dose"] == 6.0
    below = Stay(1, meds=[("2021-01-10 10:00", "corticosteroid", 5.9, 1.0, "IV"),
                          ("2021-01-11 11:00", "corticosteroid", 5.9, 1.0, "IV")])
    assert status(below) == {1: "steroid_dose"}
    # a dose after T0 does not count
    after = Stay(1, meds=[("2021-01-10 10:00", "corticosteroid", 4.0, 1.0, "IV"),
                          ("2021-01-11 13:00", "corticosteroid", 6.0, 1.0, "IV")])
    assert status(after) == {1: "steroid_dose"}


def test_u071_missing_but_pcr_positive_in_window():
    pcr = Stay(1, icd10=[], labs=[("2020-12-28 09:00", "sars_cov2_pcr", None, "Detected")])  # 13 days before
    assert status(pcr) == {1: "eligible"}
    early = Stay(1, icd10=[], labs=[("2020-12-26 07:00", "sars_cov2_pcr", None, "positive")])  # > 14 days
    assert status(early) == {1: "covid_confirmed"}
    late = Stay(1, icd10=[], labs=[("2021-01-12 09:00", "sars_cov2_pcr", None, "positive")])  # > 2 days after
    assert status(late) == {1: "covid_confirmed"}


def test_baseline_lab_is_last_value_in_window():
    stay = Stay(1, labs=[
        ("2021-01-08 11:00", "crp", 10.0, None),   # 73 h before T0: outside
        ("2021-01-08 12:00", "ferritin", 900.0, None),  # exactly 72 h: inside
        ("2021-01-10 12:00", "crp", 50.0, None),
        ("2021-01-11 12:00", "crp", 70.0, None),   # at T0: inside
        ("2021-01-11 12:01", "crp", 99.0, None),   # after T0: outside
    ])
    row = only(stay)
    assert (row["cov_num_crp"], row["cov_num_ferritin"]) == (70.0, 900.0)


def test_comorbidities_and_obesity_from_bmi():
    stay = Stay(1, weight_kg=100.0, height_cm=170.0,
                icd10=[("U07.1", "covid19"), ("E11.9", "diabetes"), ("I10", "hypertension")])
    row = only(stay)
    assert (row["cov_bin_diabetes"], row["cov_bin_hypertension"], row["cov_bin_obesity"], row["cov_bin_ckd"]) == (1, 1, 1, 0)


def test_remdesivir_before_t0_only():
    before = Stay(1, meds=Stay(1).meds + [("2021-01-10 12:00", "remdesivir", 200.0, None, "IV")])
    after = Stay(1, meds=Stay(1).meds + [("2021-01-12 12:00", "remdesivir", 200.0, None, "IV")])
    assert only(before)["cov_bin_remdesivir"] == 1 and only(after)["cov_bin_remdesivir"] == 0


def test_invasive_at_t0_is_not_before():
    stay = Stay(1, support=Stay(1).support + [("invasive", "2021-01-11 12:00", None)])
    assert status(stay) == {1: "eligible"}
