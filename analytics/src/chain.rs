//! Several detectors over one stream: per sample, the highest score and every transition.

use crate::detector::{Detector, Finding, Observation, Transition};

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
