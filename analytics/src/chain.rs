//! Several detectors over one stream: per sample, the highest score and every transition.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::detector::{Detector, Finding, Observation, SeriesKey, SeriesMeta, Transition};

/// What the chain concluded about one sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub score: f64,
    /// (detector name, transition) for every detector that changed state on this sample.
    pub transitions: Vec<(String, Transition)>,
}

impl Outcome {
    /// True if some detector raised a warning on this sample.
    pub fn raised(&self) -> bool {
        self.transitions.iter().any(|(_, t)| matches!(t, Transition::Raise { .. }))
    }
}

pub struct Chain {
    detectors: Vec<Box<dyn Detector>>,
    findings: Vec<Finding>,
}

impl Chain {
    pub fn new(detectors: Vec<Box<dyn Detector>>) -> Self {
        Self { detectors, findings: Vec::new() }
    }

    pub fn detectors(&self) -> impl Iterator<Item = &dyn Detector> {
        self.detectors.iter().map(|d| d.as_ref())
    }

    /// Hands new rules to every detector.
    pub fn set_rules(&mut self, rules: &[offsite_store::rules::Rule]) {
        for d in &mut self.detectors {
            d.set_rules(rules);
        }
    }

    /// Time-driven transitions of every detector, with the detector's name.
    pub fn idle(&mut self, now: DateTime<Utc>) -> Vec<(String, SeriesKey, Arc<SeriesMeta>, Transition)> {
        let mut out = Vec::new();
        for d in &mut self.detectors {
            let name = d.name().to_owned();
            out.extend(d.idle(now).into_iter().map(|(k, m, t)| (name.clone(), k, m, t)));
        }
        out
    }

    /// The model files every detector has in use.
    pub fn models(&self) -> Vec<offsite_store::detector_models::ModelLoad> {
        self.detectors.iter().flat_map(|d| d.models()).collect()
    }

    /// Runs every detector over the batch; one outcome per sample, in order.
    pub fn observe(&mut self, batch: &[Observation]) -> Vec<Outcome> {
        let mut out = vec![Outcome::default(); batch.len()];
        for d in &mut self.detectors {
            self.findings.clear();
            d.observe(batch, &mut self.findings);
            for f in self.findings.drain(..) {
                let Some(o) = out.get_mut(f.index) else { continue };
                if f.score > o.score {
                    o.score = f.score;
                }
                if let Some(t) = f.transition {
                    o.transitions.push((d.name().to_owned(), t));
                }
            }
        }
        out
    }
}
