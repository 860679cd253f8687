//! Analytics: detectors over the sample stream, and the tools that measure them offline
//! (backtest over recorded series, the NAB scorer).

pub mod anomaly;
pub mod backtest;
pub mod chain;
pub mod detector;
pub mod likelihood;
pub mod live;
pub mod nab;
pub mod replay;
pub mod onnx;
pub mod rules;
pub mod shards;

pub use detector::{Detector, Finding, Level, Observation, SeriesKey, SeriesMeta, Transition};
