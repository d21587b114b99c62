"""Config errors stop the workflow before any job, with a message that names the key.

Each case edits one key of config/config.yaml in a scratch copy and runs ``snakemake --dry-run``:
the exit status is non-zero, the output names the key (``config key '<dotted.key>'``), and no
``results/`` folder is created.
"""

import pytest
import yaml

from workflow_runner import Workflow

pytestmark = pytest.mark.e2e


def _set(path, value):
    def edit(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _drop_covariate(config):  # log_transform keeps cov_num_crp, the model no longer has it
    config["propensity"]["covariates"].remove("cov_num_crp")


CASES = {
    "misspelled_key": (_set(["matching", "calipr_sd"], 0.2),
                       ["config key 'matching.calipr_sd': unknown key; did you mean 'caliper_sd'?"]),
    "misspelled_section": (_set(["studdy"], {"min_age": 18}),
                           ["config key 'studdy': unknown key; did you mean 'study'?"]),
    "wrong_type": (_set(["matching", "ratio"], "one"),
                   ["config key 'matching.ratio': 'one' is not of type 'integer'"]),
    "caliper_zero": (_set(["matching", "caliper_sd"], 0),
                     ["config key 'matching.caliper_sd': 0 is less than or equal to the minimum of 0"]),
    "caliper_negative": (_set(["matching", "caliper_sd"], -0.2),
                         ["config key 'matching.caliper_sd': -0.2 is less than or equal to the minimum of 0"]),
    "grace_longer_than_followup": (_set(["study", "grace_hours"], 24 * 30),
                                   ["config key 'study.grace_hours': 720 h is not shorter than the follow-up "
                                    "of study.followup_days = 28 days"]),
    "unknown_covariate": (lambda c: c["propensity"]["covariates"].append("cov_num_shoe_size"),
                          ["config key 'propensity.covariates': unknown covariate(s) cov_num_shoe_size"]),
    "unknown_analysis": (_set(["survival", "analyses", "tmle"], {}),
                         ["config key 'survival.analyses.tmle': unknown key"]),
    "log_transform_not_in_model": (_drop_covariate,
                                   ["config key 'propensity.log_transform': cov_num_crp not in "
                                    "propensity.covariates"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_config_stops_before_any_job(name, tmp_path):
    edit, says = CASES[name]
    flow = Workflow.copy(tmp_path)
    config = yaml.safe_load(flow.config_path.read_text())
    edit(config)
    flow.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = flow.snakemake("--dry-run", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for fragment in says:
        assert fragment in text, text[-2000:]
    assert "invalid configuration" in text
    assert not (tmp_path / "results").exists()


def test_a_real_run_with_a_bad_config_starts_no_job(tmp_path):
    flow = Workflow.copy(tmp_path)
    config = yaml.safe_load(flow.config_path.read_text())
    config["matching"]["calipr_sd"] = 0.2
    flow.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = flow.snakemake(check=False)
    assert proc.returncode != 0 and "did you mean 'caliper_sd'?" in proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()
