//! Hostile and broken input, one table: suites, data files, model files,
//! price files, run folders and flags, each written by a stranger or cut
//! off. Every case must end with exit 2 and one `error:` line naming the
//! file (and line or field) or the flag, within a bounded time and memory
//! (peak RSS, from the kernel's accounting of the finished process), with no
//! panic and nothing half-written in the output folder.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One case: its name, the openweigh arguments, and what the error must say.
struct Case {
    name: &'static str,
    args: Vec<String>,
    says: String,
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> String {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

/// A one-task suite around `task` (YAML lines of the task, indented 4).
fn suite(dir: &Path, name: &str, task: &str) -> String {
    write(dir, name, format!("name: s\ntasks:\n  - task: t\n{task}"))
}

const MC: &str = "    data_files: d.jsonl\n    output_type: multiple_choice\n    doc_to_text: \"Q: {{q}}\"\n    doc_to_choice: [\"a\", \"b\"]\n    doc_to_target: 0\n";

fn run(suite: &str) -> Vec<String> {
    ["run", "--probe-reps", "0", "--no-report", "--suite", suite].map(String::from).to_vec()
}

fn run_model(model: &str) -> Vec<String> {
    let mut a = run(&repo_path("suites/examples/capitals.yaml").display().to_string());
    a.extend(["--model".to_string(), model.to_string()]);
    a
}

/// A GGUF header: version 3, `tensors` tensor infos, `kvs` metadata entries.
fn gguf(kvs: &[Vec<u8>], tensors: &[Vec<u8>]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    for kv in kvs {
        b.extend(kv);
    }
    for t in tensors {
        b.extend(t);
    }
    b.resize(b.len().div_ceil(32) * 32 + 64, 0);
    b
}

fn gstr(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u64).to_le_bytes().to_vec();
    b.extend(s.as_bytes());
    b
}

fn kv_str(k: &str, v: &str) -> Vec<u8> {
    let mut b = gstr(k);
    b.extend(8u32.to_le_bytes());
    b.extend(gstr(v));
    b
}

fn kv_u32(k: &str, v: u32) -> Vec<u8> {
    let mut b = gstr(k);
    b.extend(4u32.to_le_bytes());
    b.extend(v.to_le_bytes());
    b
}

fn tensor(name: &str, dims: &[u64]) -> Vec<u8> {
    let mut b = gstr(name);
    b.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend(d.to_le_bytes());
    }
    b.extend(0u32.to_le_bytes()); // F32
    b.extend(0u64.to_le_bytes());
    b
}

fn llama_kvs(heads: u32) -> Vec<Vec<u8>> {
    vec![
        kv_str("general.architecture", "llama"),
        kv_u32("llama.block_count", 1),
        kv_u32("llama.embedding_length", 64),
        kv_u32("llama.attention.head_count", heads),
    ]
}

fn cases(d: &Path) -> Vec<Case> {
    write(d, "d.jsonl", "{\"q\": \"x\"}\n{\"q\": \"y\"}\n");
    let case = |name, args: Vec<String>, says: &str| Case { name, args, says: says.to_string() };
    let bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\nname: s\ntasks: *h\n";
    let deep = format!("name: s\ntasks: {}{}\n", "[".repeat(20_000), "]".repeat(20_000));
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..300 {
            e.write_all(&chunk).unwrap();
        }
        e.finish().unwrap()
    };
    write(d, "bomb.jsonl.gz", gz);
    write(d, "huge-line.jsonl", format!("{{\"q\": \"{}\"}}\n", "x".repeat(70 << 20)));
    write(d, "empty.jsonl", "");
    write(d, "latin1.jsonl", b"{\"q\": \"caf\xe9\"}\n");
    write(d, "array.jsonl", "[1, 2, 3]\n");
    write(d, "junk.arrow", "not arrow at all");
    write(d, "a.yaml", "name: a\nextends: b.yaml\n");
    write(d, "b.yaml", "name: b\nextends: a.yaml\n");
    let good_gguf_path = default_model();
    let model = std::fs::read(&good_gguf_path).unwrap();
    let fixture = repo_path("tests/fixtures/report/runs/smollm2");
    let run_copy = |name: &str, edit: &dyn Fn(&Path)| -> String {
        let dir = d.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["run.json", "samples.jsonl"] {
            std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
        }
        edit(&dir);
        dir.display().to_string()
    };
    let good_run = run_copy("good-run", &|_| {});
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let cap = repo_path("suites/examples/capitals.yaml").display().to_string();
    vec![
        // Suites.
        case("yaml syntax", run(&suite(d, "syntax.yaml", "    data_files: [d.jsonl\n")), "syntax.yaml:"),
        case("yaml bomb", run(&write(d, "bomb.yaml", bomb)), "bomb.yaml"),
        case("deep nesting", run(&write(d, "deep.yaml", deep)), "deep.yaml"),
        case("tasks of wrong type", run(&write(d, "type.yaml", "name: s\ntasks: 5\n")), "type.yaml"),
        case("no tasks", run(&write(d, "none.yaml", "name: s\ntasks: []\n")), "none.yaml: has no tasks"),
        case("unknown field", run(&suite(d, "field.yaml", &format!("{MC}    taks: 1\n"))), "unknown field `taks`"),
        case("unknown output type", run(&suite(d, "ot.yaml", &MC.replace("multiple_choice", "loglikelihood_rolling"))), "ot.yaml"),
        case("unknown metric", run(&suite(d, "m.yaml", &format!("{MC}    metric_list: [bleu]\n"))), "unknown metric 'bleu'"),
        case("template syntax", run(&suite(d, "tpl.yaml", &MC.replace("{{q}}", "{{q"))), "`doc_to_text` is not a valid Jinja template"),
        case("template loops for ever", run(&suite(d, "loop.yaml", &MC.replace("Q: {{q}}", "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"))), "ran out of fuel"),
        case("template blows up", run(&suite(d, "blow.yaml", &MC.replace("Q: {{q}}", "{{ 'x' * 3000000000 }}"))), "too large"),
        case("template recursion", run(&suite(d, "rec.yaml", &MC.replace("Q: {{q}}", "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"))), "recursion limit"),
        case("template renders megabytes", run(&suite(d, "mega.yaml", &MC.replace("Q: {{q}}", "{% for i in range(100000) %}abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop{% endfor %}"))), "more than the 4 MiB"),
        case("extends cycle", run(&write(d, "a.yaml", "name: a\nextends: b.yaml\n")), "a.yaml"),
        case("extends unknown", run(&write(d, "ext.yaml", "name: e\nextends: nowhere\n")), "ext.yaml:2: extends: unknown suite 'nowhere'"),
        case("sample zero", run(&suite(d, "s0.yaml", &format!("{MC}    sample: 0\n"))), "`sample: 0` selects no items"),
        case("sample negative", run(&suite(d, "sn.yaml", &format!("{MC}    sample: -5\n"))), "sn.yaml"),
        case("empty stop string", run(&suite(d, "stop.yaml", "    data_files: d.jsonl\n    output_type: generate_until\n    doc_to_text: \"{{q}}\"\n    doc_to_target: \"x\"\n    generation_kwargs: {until: [\"\"]}\n")), "until holds an empty string"),
        case("huge max_gen_toks", run(&suite(d, "gen.yaml", "    data_files: d.jsonl\n    output_type: generate_until\n    doc_to_text: \"{{q}}\"\n    doc_to_target: \"x\"\n    generation_kwargs: {max_gen_toks: 100000000}\n")), "leaves no room for a prompt"),
        case("exec timeout out of range", run(&suite(d, "ex.yaml", &format!("{MC}    exec_timeout_s: 100000\n"))), "exec_timeout_s 100000 is out of range"),
        // Data files.
        case("missing data", run(&suite(d, "miss.yaml", &MC.replace("d.jsonl", "nope.jsonl"))), "nope.jsonl: file not found"),
        case("empty data", run(&suite(d, "empty.yaml", &MC.replace("d.jsonl", "empty.jsonl"))), "empty.jsonl: holds no documents"),
        case("non-UTF-8 data", run(&suite(d, "l1.yaml", &MC.replace("d.jsonl", "latin1.jsonl"))), "latin1.jsonl:1: not UTF-8"),
        case("70 MB line", run(&suite(d, "hl.yaml", &MC.replace("d.jsonl", "huge-line.jsonl"))), "huge-line.jsonl:1: line longer than 64 MiB"),
        case("gzip bomb", run(&suite(d, "gz.yaml", &MC.replace("d.jsonl", "bomb.jsonl.gz"))), "bomb.jsonl.gz:1: line longer than 64 MiB"),
        case("wrong schema", run(&suite(d, "arr.yaml", &MC.replace("d.jsonl", "array.jsonl"))), "array.jsonl:1: not a JSON object"),
        case("junk arrow", run(&suite(d, "ar.yaml", &MC.replace("d.jsonl", "junk.arrow"))), "not a readable Arrow IPC file"),
        case("unknown data format", run(&suite(d, "fmt.yaml", &MC.replace("d.jsonl", "d.csv"))), "d.csv"),
        // Model files.
        case("truncated model", run_model(&write(d, "trunc.gguf", &model[..model.len() / 3])), "truncated"),
        case("wrong magic", run_model(&write(d, "magic.gguf", b"GGML\x03\x00\x00\x00junk")), "magic.gguf: not a usable model"),
        case("absurd tensor count", run_model(&write(d, "count.gguf", { let mut g = gguf(&llama_kvs(4), &[]); g[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes()); g })), "tensor_count 1099511627776 exceeds"),
        case("absurd string length", run_model(&write(d, "str.gguf", gguf(&[(1u64 << 62).to_le_bytes().to_vec()], &[]))), "string length"),
        case("absurd tensor shape", run_model(&write(d, "shape.gguf", gguf(&llama_kvs(4), &[tensor("token_embd.weight", &[1 << 40, 1 << 40])]))), "impossible shape"),
        case("unknown architecture", run_model(&write(d, "arch.gguf", gguf(&[kv_str("general.architecture", "gpt2")], &[]))), "architecture 'gpt2' is not supported"),
        case("zero heads", run_model(&write(d, "heads.gguf", gguf(&llama_kvs(0), &[]))), "head_count is 0"),
        case("not a model at all", run_model(&write(d, "text.gguf", "hello")), "text.gguf: not a usable model"),
        case("model folder without config", run_model(&{ std::fs::create_dir_all(d.join("emptydir")).unwrap(); d.join("emptydir").display().to_string() }), "config.json"),
        // Price files.
        case("negative price", s(&["prices", "import", &write(d, "neg.csv", "provider,model,input_usd_per_mtok,output_usd_per_mtok\na,b,-1,2\n")]), "neg.csv:2: a/b: prices must be 0 or more"),
        case("NaN price", s(&["prices", "import", &write(d, "nan.csv", "provider,model,input_usd_per_mtok,output_usd_per_mtok\na,b,NaN,2\n")]), "nan.csv:2"),
        case("non-numeric price", s(&["prices", "import", &write(d, "txt.csv", "provider,model,input_usd_per_mtok,output_usd_per_mtok\na,b,cheap,2\n")]), "txt.csv:2"),
        case("duplicate price rows", s(&["prices", "import", &write(d, "dup.csv", "provider,model,input_usd_per_mtok,output_usd_per_mtok\na,b,1,2\nc,d,1,2\na,b,3,4\n")]), "dup.csv:4: a/b is priced twice (first on line 2)"),
        case("empty price file", s(&["prices", "import", &write(d, "empty.csv", "")]), "empty.csv"),
        case("litellm JSON array", s(&["prices", "import", &write(d, "arr.json", "[1, 2]")]), "arr.json"),
        case("price table for a run", { let mut a = run_model("smollm2-135m-instruct"); a.extend(s(&["--prices", &write(d, "p.csv", "nonsense")])); a }, "p.csv"),
        // Run folders given to report and compare.
        case("report of a missing folder", s(&["report", &d.join("nowhere").display().to_string()]), "run.json: file not found"),
        case("report of a torn run.json", s(&["report", &run_copy("torn", &|r| { let t = std::fs::read(r.join("run.json")).unwrap(); std::fs::write(r.join("run.json"), &t[..t.len() / 2]).unwrap(); })]), "not an openweigh run.json"),
        case("compare with a damaged sample line", s(&["compare", &good_run, &run_copy("bad-line", &|r| { let t = std::fs::read_to_string(r.join("samples.jsonl")).unwrap(); std::fs::write(r.join("samples.jsonl"), t.replacen("{", "{{", 1)).unwrap(); })]), "samples.jsonl:1"),
        case("compare of mixed suites", s(&["compare", &good_run, &run_copy("other-suite", &|r| { let t = std::fs::read_to_string(r.join("run.json")).unwrap(); std::fs::write(r.join("run.json"), t.replacen("\"sha256\"", "\"was\"", 0).replace("\"name\": \"quick\"", "\"name\": \"other\"")).unwrap(); let s = std::fs::read_to_string(r.join("samples.jsonl")).unwrap(); std::fs::write(r.join("samples.jsonl"), s.replace("\"prompt_hash\":\"", "\"prompt_hash\":\"z")).unwrap(); })]), "the suites render differently"),
        case("resume of a folder that is not a run", s(&["run", "--resume", &d.display().to_string()]), "run.json: file not found"),
        // Flags and combinations.
        case("limit 0", { let mut a = run(&cap); a.extend(s(&["--limit", "0"])); a }, "--limit: must be at least 1"),
        case("threads 0", { let mut a = run(&cap); a.extend(s(&["--threads", "0"])); a }, "--threads: must be at least 1"),
        case("concurrency 0", { let mut a = run(&cap); a.extend(s(&["--concurrency", "0"])); a }, "--concurrency: must be at least 1"),
        case("request timeout NaN", { let mut a = run(&cap); a.extend(s(&["--request-timeout", "NaN"])); a }, "--request-timeout"),
        case("alpha out of range", s(&["compare", "--alpha", "2", &good_run, &good_run]), "--alpha: must be between 0 and 1"),
        case("negative max drop", s(&["compare", "--max-drop=-1", &good_run, &good_run]), "--max-drop: must be 0 or more"),
        case("adapter on a served model", { let mut a = run(&cap); a.extend(s(&["--model", "openai:http://127.0.0.1:9/v1#m", "--adapter", &d.display().to_string()])); a }, "a served model loads adapters on its server"),
        case("adapter with several models", { let mut a = run(&cap); a.extend(s(&["--model", "a.gguf", "--model", "b.gguf", "--adapter", "x"])); a }, "--adapter: x applies to one --model"),
        case("unknown weights value", { let mut a = run(&cap); a.extend(s(&["--weights", "q3"])); a }, "--weights"),
        case("unknown hardware profile", { let mut a = run(&cap); a.extend(s(&["--hardware", "tpu-v9"])); a }, "tpu-v9"),
        case("negative hourly price", { let mut a = run(&cap); a.extend(s(&["--hourly-usd=-3"])); a }, "--hourly-usd"),
    ]
}

/// Most memory one case may take: the inputs claim gigabytes (tensor shapes,
/// string lengths, gzip bombs, 50 MB lines); reading them must not.
const MAX_RSS_BYTE: u64 = 512 << 20;

/// Runs `cmd` to the end like `Command::output`, and returns its peak
/// resident set size (bytes) as the kernel counted it (`wait4`'s rusage).
// The child is reaped by `wait4` below, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn output_and_peak_rss(mut cmd: std::process::Command) -> (std::process::Output, u64) {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        out.read_to_end(&mut b).unwrap();
        b
    });
    let mut stderr = Vec::new();
    err.read_to_end(&mut stderr).unwrap();
    let stdout = out_reader.join().unwrap();
    let (mut status, mut usage) = (0i32, unsafe { std::mem::zeroed::<libc::rusage>() });
    // SAFETY: waits for our own child, writing into the two locals.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    let output = std::process::Output { status: std::process::ExitStatus::from_raw(status), stdout, stderr };
    // ru_maxrss is in KiB on Linux.
    (output, usage.ru_maxrss as u64 * 1024)
}

#[test]
fn hostile_inputs_end_in_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cases = cases(d);
    let mut failures = Vec::new();
    let mut slowest = (0.0f64, "");
    let mut biggest = (0u64, "");
    for c in &cases {
        let out_dir = d.join("out").join(c.name.replace(' ', "-"));
        let start = Instant::now();
        let mut cmd = openweigh_std();
        cmd.args(&c.args)
            .args(if c.args[0] == "run" || c.args[0] == "compare" || c.args[0] == "report" {
                vec!["--out".into(), out_dir.display().to_string()]
            } else {
                vec![]
            })
            .current_dir(d);
        let (o, rss) = output_and_peak_rss(cmd);
        let secs = start.elapsed().as_secs_f64();
        if secs > slowest.0 {
            slowest = (secs, c.name);
        }
        if rss > biggest.0 {
            biggest = (rss, c.name);
        }
        let err = String::from_utf8_lossy(&o.stderr);
        // Progress lines may come first; clap adds its usage lines after.
        let error = err.lines().find(|l| l.starts_with("error: ")).unwrap_or("");
        let problems: Vec<&str> = [
            (o.status.code() != Some(2), "exit code is not 2"),
            (error.is_empty(), "no `error: …` line"),
            (err.lines().filter(|l| l.starts_with("error: ")).count() > 1, "more than one error line"),
            (!error.contains(c.says.as_str()), "the error does not say what it should"),
            (err.contains("panicked"), "panic"),
            (secs > 30.0, "took more than 30 s"),
            (rss > MAX_RSS_BYTE, "peak RSS above 512 MiB"),
            (
                out_dir.join("run.json").exists() || out_dir.read_dir().is_ok_and(|mut r| r.next().is_some()),
                "wrote into the output folder",
            ),
        ]
        .into_iter()
        .filter(|(bad, _)| *bad)
        .map(|(_, why)| why)
        .collect();
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {} (exit {:?}, wanted {:?}):\n{err}",
                c.name,
                problems.join(", "),
                o.status.code(),
                c.says
            ));
        }
    }
    eprintln!(
        "{} hostile cases; slowest {:.1} s ({}); largest peak RSS {} MiB ({})",
        cases.len(),
        slowest.0,
        slowest.1,
        biggest.0 >> 20,
        biggest.1
    );
    assert!(cases.len() >= 40);
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    let _ = (Duration::ZERO, PathBuf::new());
}
