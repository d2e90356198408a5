"""The pieces of [`icp.calibrate`], one job per module.

- `sweep`: runs ICP pinned at each temperature of the sweep and records the per-token signals;
- `fit`: the logistic fit of coherence against entropy (`LogisticFit`) and its bootstrap over prompts;
- `thresholds`: the regime thresholds read off per-token quantiles (`THRESHOLD_RULES`);
- `heat`: the per-step heat capacity C_v(T), its peak temperature, and the read-out comparing the peaks
  with where the sweep reaches H_c and H*;
- `result`: [`CalibrationResult`], what a calibration returns and a model card is written from;
- `plot`: the calibration plot.

`icp.calibrate` puts them together ([`icp.calibrate.calibrate`]) and re-exports every public name, so
`from icp.calibrate import ...` is the import to use. Only `sweep` runs a model, and it imports ICP's
processors inside the function that needs them: [`icp.cards`] (imported by the processors) can import
the other modules without an import cycle.
"""
