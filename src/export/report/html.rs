//! `index.html`: one self-contained file — inline CSS, inline SVG charts, a
//! few lines of inline script to sort the table, no external fetch of any kind.
//! Every string from suites, models and results goes through [`escape`].

use super::charts::{color_hex, Chart};
use super::Drawn;
use crate::analysis::report::{ModelReport, PriceBasis, Report};
use crate::export::markup::{escape, tail_chars};
use crate::export::Exporter;
use anyhow::Result;

/// `index.html`.
pub struct Html;

impl Exporter<Drawn<'_>> for Html {
    fn file_name(&self) -> String {
        "index.html".into()
    }

    fn serialize(&self, d: &Drawn) -> Result<Vec<u8>> {
        Ok(page(d.report, &d.charts).into_bytes())
    }
}

const STYLE: &str = r#"
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 4px; } .sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 12px 0 24px; font-size: 14px; }
th, td { border-bottom: 1px solid #ddd; padding: 5px 9px; text-align: right; vertical-align: top; }
th { background: #f3f5f8; cursor: pointer; user-select: none; } th.nosort { cursor: default; }
td.l, th.l { text-align: left; } td.l { white-space: nowrap; }
.scroll { overflow-x: auto; max-width: 100%; }
.dot { display: inline-block; width: 11px; height: 11px; border-radius: 50%; margin-right: 6px; }
figure { margin: 18px 0 30px; } figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
details { margin: 8px 0; } summary { cursor: pointer; font-weight: bold; }
pre { white-space: pre-wrap; word-break: break-word; margin: 0; font-size: 12px; max-height: 12em; overflow: auto; }
.warn { background: #fff4ce; border-left: 4px solid #e0a800; padding: 6px 10px; }
.note { color: #555; font-size: 13px; max-width: 900px; }
"#;

/// Sorts a table by the clicked column (numbers numerically, text otherwise),
/// and on load by the column a link names: `index.html#sort-models-1-desc`
/// (table id, column, asc/desc). Each table says what it is sorted by in
/// `data-sorted`.
const SCRIPT: &str = r#"
function sortTable(t, col, asc) {
  var rows = Array.from(t.tBodies[0].rows);
  rows.sort(function (a, b) {
    var x = a.cells[col].dataset.v || a.cells[col].textContent, y = b.cells[col].dataset.v || b.cells[col].textContent;
    var nx = parseFloat(x), ny = parseFloat(y);
    var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
    return asc ? c : -c;
  });
  rows.forEach(function (r) { t.tBodies[0].appendChild(r); });
  t.dataset.sorted = col + (asc ? '-asc' : '-desc');
}
document.querySelectorAll('table.sortable').forEach(function (t) {
  t.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = th.dataset.asc !== '1';
      th.dataset.asc = asc ? '1' : '0';
      sortTable(t, col, asc);
    });
  });
  t.dataset.sorted = 'none';
});
var m = /^#sort-([a-z]+)-([0-9]+)-(asc|desc)$/.exec(location.hash);
if (m && document.getElementById(m[1])) { sortTable(document.getElementById(m[1]), parseInt(m[2], 10), m[3] === 'asc'); }
"#;

fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) => format!("<td data-v=\"{x}\">{x:.digits$}</td>"),
        None => "<td data-v=\"\">–</td>".into(),
    }
}

fn model_cell(m: &ModelReport) -> String {
    format!(
        "<td class=\"l\"><span class=\"dot\" style=\"background:{}\"></span>{}</td>",
        color_hex(m.color),
        escape(&m.row.model)
    )
}

fn headline_table(r: &Report) -> String {
    let mut s = String::from(
        "<table class=\"sortable\" id=\"models\"><thead><tr><th class=\"l\">model</th><th>quality</th><th>95% CI</th>\
         <th>blended $/1M tok</th><th>cheapest provider $/1M</th><th>decode tok/s</th><th>prefill tok/s</th><th>TTFT s</th>\
         <th>500-tok answer s</th><th>peak MiB</th><th>run cost $</th><th>failed</th></tr></thead><tbody>\n",
    );
    for m in &r.models {
        s.push_str("<tr>");
        s.push_str(&model_cell(m));
        let a = &m.row.aggregate;
        s.push_str(&num(Some(a.point), 3));
        s.push_str(&format!("<td data-v=\"{}\">[{:.3}, {:.3}]</td>", a.ci95.low, a.ci95.low, a.ci95.high));
        match m.chart_price() {
            Some((v, PriceBasis::Provider)) => s.push_str(&format!("<td data-v=\"{v}\">{v:.4} ▲ served</td>")),
            other => s.push_str(&num(other.map(|(v, _)| v), 4)),
        }
        match m.offerings.first() {
            Some(o) => s.push_str(&format!(
                "<td data-v=\"{}\">{:.4} ({})</td>",
                o.blended_usd_per_mtok(),
                o.blended_usd_per_mtok(),
                escape(&o.provider)
            )),
            None => s.push_str("<td data-v=\"\">–</td>"),
        }
        s.push_str(&num(m.row.decode_tok_per_s, 1));
        s.push_str(&num(m.row.prefill_tok_per_s, 1));
        s.push_str(&num(m.row.ttft_s, 3));
        s.push_str(&num(m.e2e_500_s, 2));
        s.push_str(&num(Some(m.row.peak_rss_byte as f64 / (1024.0 * 1024.0)), 0));
        s.push_str(&num(m.run_tokens_cost_usd, 6));
        s.push_str(&format!("<td>{}</td></tr>\n", m.row.n_failed));
    }
    s.push_str("</tbody></table>\n");
    s
}

fn task_table(r: &Report) -> String {
    let mut s = String::from("<table class=\"sortable\" id=\"tasks\"><thead><tr><th class=\"l\">model</th>");
    for t in r.tasks.iter().chain(&r.groups) {
        s.push_str(&format!("<th>{}</th>", escape(t)));
    }
    s.push_str("</tr></thead><tbody>\n");
    for m in &r.models {
        s.push_str("<tr>");
        s.push_str(&model_cell(m));
        for t in r.tasks.iter().chain(&r.groups) {
            match m.row.score(t) {
                Some(x) => s.push_str(&format!(
                    "<td data-v=\"{}\" title=\"{} n={}, 95% CI [{:.3}, {:.3}]\">{:.3}</td>",
                    x.score.point,
                    escape(&x.metric),
                    x.score.n,
                    x.score.ci95.low,
                    x.score.ci95.high,
                    x.score.point
                )),
                None => s.push_str("<td data-v=\"\">–</td>"),
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table>\n");
    s
}

fn metadata(r: &Report) -> String {
    let mut s = String::from(
        "<table><thead><tr><th class=\"l nosort\">model</th><th class=\"l nosort\">run</th><th class=\"l nosort\">model sha256</th>\
         <th class=\"l nosort\">suite sha256</th><th class=\"l nosort\">weights</th><th class=\"l nosort\">openweigh</th>\
         <th class=\"nosort\">threads</th><th class=\"l nosort\">device / CPU</th><th class=\"nosort\">load s</th></tr></thead><tbody>\n",
    );
    for m in &r.models {
        let meta = &m.meta;
        let weights = meta.model.load.get("weight_format").and_then(|v| v.as_str()).unwrap_or("");
        s.push_str(&format!(
            "<tr>{}<td class=\"l\">{}<br>{} → {}</td><td class=\"l\"><code>{}</code></td><td class=\"l\"><code>{}</code></td>\
             <td class=\"l\">{} ({})</td><td class=\"l\">{} ({})</td><td>{}</td><td class=\"l\">{} · {}</td><td>{:.2}</td></tr>\n",
            model_cell(m),
            escape(&meta.run_id),
            escape(&meta.started_at),
            escape(meta.finished_at.as_deref().unwrap_or("unfinished")),
            escape(&meta.model.sha256),
            escape(&meta.suite.sha256),
            escape(weights),
            escape(&meta.model.architecture),
            escape(&meta.openweigh_version),
            escape(&meta.openweigh_commit),
            meta.threads,
            escape(&meta.device),
            escape(&meta.host.cpu),
            meta.model.load_s
        ));
    }
    s.push_str("</tbody></table>\n");
    s
}

fn wrong_items(r: &Report) -> String {
    let mut s = String::new();
    for m in &r.models {
        s.push_str(&format!(
            "<details><summary><span class=\"dot\" style=\"background:{}\"></span>{}: {} item(s) wrong or failed</summary>\n",
            color_hex(m.color),
            escape(&m.row.model),
            m.wrong.len()
        ));
        s.push_str(
            "<table class=\"sortable\"><thead><tr><th class=\"l\">task</th><th class=\"l\">item</th>\
             <th class=\"l\">prompt (end)</th><th class=\"l\">gold</th><th class=\"l\">prediction</th></tr></thead><tbody>\n",
        );
        for w in &m.wrong {
            let pred = match &w.error {
                Some(e) => format!("error: {e}"),
                None => w.generated.clone().unwrap_or_else(|| w.prediction.clone()),
            };
            let gold = match (&w.choices, w.gold.parse::<usize>()) {
                (Some(c), Ok(i)) if i < c.len() => format!("{i}: {}", c[i]),
                _ => w.gold.clone(),
            };
            let pred = match (&w.choices, pred.parse::<usize>()) {
                (Some(c), Ok(i)) if i < c.len() && w.error.is_none() => format!("{i}: {}", c[i]),
                _ => pred,
            };
            s.push_str(&format!(
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\"><pre>{}</pre></td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>\n",
                escape(&w.task),
                escape(&w.id),
                escape(&tail_chars(&w.prompt, 400)),
                escape(&gold),
                escape(&pred)
            ));
        }
        s.push_str("</tbody></table></details>\n");
    }
    s
}

pub fn page(r: &Report, charts: &[Chart]) -> String {
    let mut s = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    s.push_str(&format!("<title>openweigh report: {}</title>\n", escape(&r.suites.join(", "))));
    s.push_str(&format!("<style>{STYLE}</style></head><body>\n"));
    s.push_str(&format!("<h1>openweigh report</h1>\n<p class=\"sub\">Suite {} · {} model(s) · self-hosted prices at ${}/h ({}: {}) · price table {}</p>\n",
        escape(&r.suites.join(", ")),
        r.models.len(),
        r.hardware.usd_per_hour,
        escape(&r.hardware.name),
        escape(&r.hardware.what),
        escape(&r.price_source)));
    for w in &r.warnings {
        s.push_str(&format!("<p class=\"warn\">Note: {}</p>\n", escape(w)));
    }
    let mut charts = charts.iter();
    if let Some(c) = charts.next() {
        s.push_str(&format!("<figure id=\"{}\">{}</figure>\n", c.name, c.svg));
    }
    s.push_str("<h2>Models</h2>\n<p class=\"note\">Click a column to sort. Quality is the mean over tasks of chance-normalised scores, \
        (score − chance)/(1 − chance), with a 95% bootstrap CI. Blended price = (3·input + output)/4 USD per 1M tokens, input \
        priced at the measured prefill speed and output at the decode speed on the hardware price above. Run cost: this \
        run's tokens at that price.</p>\n");
    s.push_str(&format!("<div class=\"scroll\">{}</div>\n", headline_table(r)));
    s.push_str("<h2>Per task</h2>\n");
    s.push_str(&format!("<div class=\"scroll\">{}</div>\n", task_table(r)));
    for c in charts {
        s.push_str(&format!("<h2>{}</h2>\n<figure id=\"{}\">{}</figure>\n", escape(&c.title), c.name, c.svg));
    }
    s.push_str("<h2>Items each model got wrong</h2>\n");
    s.push_str(&wrong_items(r));
    s.push_str("<h2>Run metadata</h2>\n");
    s.push_str(&metadata(r));
    s.push_str(&format!("<script>{SCRIPT}</script>\n</body></html>\n"));
    s
}
