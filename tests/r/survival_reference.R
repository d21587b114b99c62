# Reference values from R's survival package for tests/test_survival_agreement.py.
#
# Usage: Rscript tests/r/survival_reference.R <workdir>
#   reads  <workdir>/rossi.csv, <workdir>/sim.csv  (written by the Python test)
#   writes <workdir>/lung.csv                      (R's own lung data, complete cases)
#          <workdir>/scalars.csv                   dataset,model,quantity,term,value
#          <workdir>/km_<name>.csv                 survfit tables (conf.type = "log-log")
# Every number is written with 17 significant digits.
suppressPackageStartupMessages(library(survival))

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 1) stop("usage: survival_reference.R <workdir>")
wd <- args[1]

fmt <- function(x) sprintf("%.17g", x)
scalars <- list()
add <- function(dataset, model, quantity, term, value) {
  scalars[[length(scalars) + 1]] <<- data.frame(
    dataset = dataset, model = model, quantity = quantity, term = term,
    value = fmt(value), stringsAsFactors = FALSE)
}

write_km <- function(fit, name) {
  s <- if (is.null(fit$strata)) rep("all", length(fit$time)) else
    rep(sub(".*=", "", names(fit$strata)), fit$strata)
  out <- data.frame(strata = s, time = fmt(fit$time), n_risk = fmt(fit$n.risk),
                    n_event = fmt(fit$n.event), n_censor = fmt(fit$n.censor),
                    surv = fmt(fit$surv), std_err = fmt(fit$std.err),
                    logse = fit$logse, lower = fmt(fit$lower), upper = fmt(fit$upper))
  write.csv(out, file.path(wd, paste0("km_", name, ".csv")), row.names = FALSE, quote = FALSE)
}

add_cox <- function(dataset, model, fit) {
  b <- coef(fit)
  se <- sqrt(diag(if (is.null(fit$naive.var)) fit$var else fit$naive.var))
  for (i in seq_along(b)) {
    term <- names(b)[i]
    add(dataset, model, "coef", term, b[i])
    add(dataset, model, "se", term, se[i])
    if (!is.null(fit$naive.var)) add(dataset, model, "robust_se", term, sqrt(diag(fit$var))[i])
    ci <- summary(fit)$conf.int
    add(dataset, model, "hr", term, ci[i, "exp(coef)"])
    add(dataset, model, "hr_lower", term, ci[i, "lower .95"])
    add(dataset, model, "hr_upper", term, ci[i, "upper .95"])
  }
  add(dataset, model, "loglik_null", "", fit$loglik[1])
  add(dataset, model, "loglik", "", fit$loglik[2])
  add(dataset, model, "n_events", "", fit$nevent)
}

add_zph <- function(dataset, model, fit) {
  z <- cox.zph(fit, transform = "km")$table
  for (term in rownames(z)) {
    add(dataset, model, "zph_chisq", term, z[term, "chisq"])
    add(dataset, model, "zph_df", term, z[term, "df"])
    add(dataset, model, "zph_p", term, z[term, "p"])
  }
}

add_logrank <- function(dataset, sd) {
  add(dataset, "logrank", "chisq", "", sd$chisq)
  add(dataset, "logrank", "p", "", pchisq(sd$chisq, length(sd$n) - 1, lower.tail = FALSE))
}

# ---------------------------------------------------------------- Rossi (lifelines)
rossi <- read.csv(file.path(wd, "rossi.csv"))
write_km(survfit(Surv(week, arrest) ~ fin, data = rossi, conf.type = "log-log"), "rossi")
add_logrank("rossi", survdiff(Surv(week, arrest) ~ fin, data = rossi))
f <- coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, data = rossi,
           ties = "efron", robust = TRUE)
add_cox("rossi", "efron_robust", f)
add_zph("rossi", "efron_robust", f)
f <- coxph(Surv(week, arrest) ~ fin + age + prio, data = rossi, ties = "breslow")
add_cox("rossi", "breslow", f)
add_zph("rossi", "breslow", f)

# ---------------------------------------------------------------- lung (R)
lung0 <- survival::lung
lung <- data.frame(inst = lung0$inst, time = lung0$time, status = lung0$status - 1L,
                   age = lung0$age, sex = lung0$sex, ph_ecog = lung0$ph.ecog)
lung <- lung[complete.cases(lung), ]
write.csv(lung, file.path(wd, "lung.csv"), row.names = FALSE, quote = FALSE)
write_km(survfit(Surv(time, status) ~ sex, data = lung, conf.type = "log-log"), "lung")
add_logrank("lung", survdiff(Surv(time, status) ~ sex, data = lung))
f <- coxph(Surv(time, status) ~ age + sex + ph_ecog, data = lung, ties = "efron",
           cluster = inst)
add_cox("lung", "efron_cluster", f)
add_zph("lung", "efron_cluster", f)

# ---------------------------------------------------------------- simulated matched cohort
sim <- read.csv(file.path(wd, "sim.csv"))
sim$x3 <- factor(sim$x3, levels = c("a", "b", "c"))
write_km(survfit(Surv(time, event) ~ treated, data = sim, conf.type = "log-log"), "sim")
write_km(survfit(Surv(time, event) ~ treated, data = sim, weights = w, conf.type = "log-log"),
         "sim_weighted")
write_km(survfit(Surv(entry, time, event) ~ treated, data = sim, conf.type = "log-log"),
         "sim_counting")
write_km(survfit(Surv(entry, time, event) ~ treated, data = sim, weights = w,
                 conf.type = "log-log"), "sim_counting_weighted")
add_logrank("sim", survdiff(Surv(time, event) ~ treated, data = sim))

f <- coxph(Surv(time, event) ~ treated, data = sim, ties = "efron", cluster = pair_id)
add_cox("sim", "pair", f)
add_zph("sim", "pair", f)
f <- coxph(Surv(time, event) ~ treated + x1 + x2 + x3, data = sim, ties = "efron",
           cluster = pair_id)
add_cox("sim", "pair_adjusted", f)
add_zph("sim", "pair_adjusted", f)
f <- coxph(Surv(time, event) ~ treated + x1, data = sim, weights = w, robust = TRUE)
add_cox("sim", "weighted_robust", f)
add_zph("sim", "weighted_robust", f)
f <- coxph(Surv(time, event) ~ treated + x1, data = sim, weights = w, cluster = pair_id)
add_cox("sim", "weighted_cluster", f)
f <- coxph(Surv(entry, time, event) ~ treated + x1, data = sim, weights = w, cluster = pair_id)
add_cox("sim", "counting_weighted_cluster", f)
add_zph("sim", "counting_weighted_cluster", f)

write.csv(do.call(rbind, scalars), file.path(wd, "scalars.csv"), row.names = FALSE)
