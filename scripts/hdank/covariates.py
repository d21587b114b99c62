"""Names of the baseline covariates the cohort stage writes (protocol section 3)."""

COMORBIDITIES = ("hypertension", "diabetes", "obesity", "ckd", "chronic_lung", "cardiovascular", "cancer")

#: Lab concept -> covariate column (last value in [T0 - window, T0], canonical unit).
LAB_COVARIATES = {
    "pf_ratio": "cov_num_pf_ratio",
    "crp": "cov_num_crp",
    "ferritin": "cov_num_ferritin",
    "lymphocytes": "cov_num_lymphocytes",
    "ldh": "cov_num_ldh",
    "d_dimer": "cov_num_d_dimer",
    "creatinine": "cov_num_creatinine",
}

COVARIATES = (
    "cov_num_age",
    "cov_cat_sex",
    "cov_num_bmi",
    *(f"cov_bin_{c}" for c in COMORBIDITIES),
    "cov_num_days_onset_to_t0",
    "cov_num_days_admit_to_t0",
    "cov_num_days_steroid_to_t0",
    "cov_num_steroid_dose",
    *LAB_COVARIATES.values(),
    "cov_bin_remdesivir",
    "cov_cat_period",
)
