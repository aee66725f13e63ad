"""The names of the metrics (torch-free, so option parsing and reports need not import torch)."""

BIN_SIZES = (1, 10)
TIES = ("average", "ordinal")

PROFILE_METRICS_DEFAULT = (
    "profile_mnll", "profile_mnll_per_base", "profile_cross_entropy", "profile_jsd_divergence",
    "profile_jsd_distance", "profile_norm_jsd", "profile_pearson",
)
PROFILE_METRICS_ALL = PROFILE_METRICS_DEFAULT + (
    "profile_spearman", "profile_jsd_shuffled", "profile_jsd_observed_shuffled",
) + tuple(f"profile_auprc_bin{b}" for b in BIN_SIZES)

COUNT_METRICS_DEFAULT = ("pearson", "spearman", "mse")
COUNT_METRICS_ALL = COUNT_METRICS_DEFAULT + ("mae", "variance_explained")
