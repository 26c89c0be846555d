//! The cost model. Blended price = (3·input + output)/4 USD per 1M tokens,
//! Artificial Analysis' convention. A model run on your own hardware is
//! priced from its measured prefill and decode throughput and an explicit
//! hardware price per hour: input tokens at prefill speed, output tokens at
//! decode speed. Prices are applied at report time to results that store
//! tokens and timings, never frozen into them.

use crate::error::UserError;
use anyhow::Result;
use serde::Serialize;

/// Artificial Analysis' blended price: three input tokens per output token.
pub fn blended(input_usd_per_mtok: f64, output_usd_per_mtok: f64) -> f64 {
    (3.0 * input_usd_per_mtok + output_usd_per_mtok) / 4.0
}

/// A named hardware price, so self-hosted costs are explicit and comparable.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HardwareProfile {
    pub name: &'static str,
    pub usd_per_hour: f64,
    pub what: &'static str,
}

/// Hardware prices (on-demand list prices, late 2025; pass --hourly-usd for yours).
pub const HARDWARE: &[HardwareProfile] = &[
    HardwareProfile {
        name: "cpu-2vcpu",
        usd_per_hour: 0.0893,
        what: "2 vCPU, 4 GiB cloud VM (AWS c7i.large on-demand, us-east-1)",
    },
    HardwareProfile {
        name: "cpu-8vcpu",
        usd_per_hour: 0.357,
        what: "8 vCPU, 16 GiB cloud VM (AWS c7i.2xlarge on-demand, us-east-1)",
    },
    HardwareProfile {
        name: "gpu-l4",
        usd_per_hour: 0.805,
        what: "1× NVIDIA L4 cloud VM (AWS g6.xlarge on-demand, us-east-1)",
    },
    HardwareProfile {
        name: "gpu-h100",
        usd_per_hour: 2.99,
        what: "1× NVIDIA H100 80 GB rented by the hour (typical GPU-cloud on-demand)",
    },
];

pub const DEFAULT_HARDWARE: &str = "cpu-2vcpu";

pub fn hardware(name: &str) -> Result<&'static HardwareProfile> {
    HARDWARE.iter().find(|h| h.name == name).ok_or_else(|| {
        let names: Vec<&str> = HARDWARE.iter().map(|h| h.name).collect();
        UserError::BadFlag {
            flag: "--hardware",
            message: format!("unknown profile '{name}'; use one of {} or give --hourly-usd", names.join(", ")),
        }
        .into()
    })
}

/// The price of running a model yourself at `usd_per_hour`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct SelfHostedPrice {
    pub usd_per_hour: f64,
    /// USD per 1M input tokens: usd_per_hour / (prefill tok/s × 3600) × 10⁶.
    pub input_usd_per_mtok: f64,
    /// USD per 1M output tokens: usd_per_hour / (decode tok/s × 3600) × 10⁶.
    pub output_usd_per_mtok: f64,
    pub blended_usd_per_mtok: f64,
}

/// Self-hosted price from measured throughput; None without a positive throughput.
pub fn self_hosted(usd_per_hour: f64, prefill_tok_per_s: f64, decode_tok_per_s: f64) -> Option<SelfHostedPrice> {
    if !(prefill_tok_per_s > 0.0 && decode_tok_per_s > 0.0) {
        return None;
    }
    let per_mtok = |tok_s: f64| usd_per_hour / (tok_s * 3600.0) * 1e6;
    let (input, output) = (per_mtok(prefill_tok_per_s), per_mtok(decode_tok_per_s));
    Some(SelfHostedPrice {
        usd_per_hour,
        input_usd_per_mtok: input,
        output_usd_per_mtok: output,
        blended_usd_per_mtok: blended(input, output),
    })
}

/// USD for `tokens_in` input and `tokens_out` output tokens at per-1M prices.
pub fn tokens_cost_usd(tokens_in: u64, tokens_out: u64, input_usd_per_mtok: f64, output_usd_per_mtok: f64) -> f64 {
    (tokens_in as f64 * input_usd_per_mtok + tokens_out as f64 * output_usd_per_mtok) / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn blended_weights_input_three_to_one() {
        assert_eq!(blended(1.0, 5.0), 2.0);
    }

    #[test]
    fn self_hosted_price_follows_throughput() {
        // $3.60/h at 1000 tok/s: 3.6e6 tokens an hour, $1 per 1M tokens.
        let p = self_hosted(3.6, 1000.0, 100.0).unwrap();
        assert!((p.input_usd_per_mtok - 1.0).abs() < 1e-12);
        assert!((p.output_usd_per_mtok - 10.0).abs() < 1e-12);
        assert!((p.blended_usd_per_mtok - 3.25).abs() < 1e-12);
        assert!(self_hosted(1.0, 0.0, 10.0).is_none());
        assert!((tokens_cost_usd(1_000_000, 500_000, 1.0, 10.0) - 6.0).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn faster_is_never_dearer(h in 0.01f64..10.0, p in 1.0f64..1e4, d in 1.0f64..1e3, f in 1.0f64..10.0) {
            let slow = self_hosted(h, p, d).unwrap();
            let fast = self_hosted(h, p * f, d * f).unwrap();
            prop_assert!(fast.blended_usd_per_mtok <= slow.blended_usd_per_mtok * (1.0 + 1e-12));
        }
    }
}
