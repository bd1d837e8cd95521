//! What each benchmark hands back, and `BENCHMARKS.md` built from it.

use std::fmt::Write;
use std::time::Duration;

use crate::util::Machine;

/// One target of the issue, checked against a figure of this run.
pub struct Target {
    pub what: String,
    pub target: String,
    pub measured: String,
    /// `None`: reported, not judged.
    pub met: Option<bool>,
}

impl Target {
    pub fn new(what: &str, target: &str, measured: String, met: Option<bool>) -> Self {
        Self {
            what: what.to_owned(),
            target: target.to_owned(),
            measured,
            met,
        }
    }
}

/// One benchmark's part of the report.
pub struct Section {
    pub title: String,
    /// Markdown: figures, then how they were taken, then what they mean.
    pub body: String,
    pub targets: Vec<Target>,
    pub took: Duration,
}

/// A markdown table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        header.iter().map(|_| "---|").collect::<String>()
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

pub fn f1(v: f64) -> String {
    format!("{v:.1}")
}

pub fn f2(v: f64) -> String {
    format!("{v:.2}")
}

pub fn f0(v: f64) -> String {
    format!("{v:.0}")
}

/// The whole file.
pub fn render(
    machine: &Machine,
    sections: &[Section],
    failures: &[String],
    wall: Duration,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `make bench` (`bench/`, binary `paastis-bench`) on {}; \
         do not edit by hand, run it again. Benchmarks measure, tests never \
         assert timings: a missed target below is a finding, not a failure.\n",
        machine.date
    );
    let _ = writeln!(out, "## Targets\n");
    let rows: Vec<Vec<String>> = sections
        .iter()
        .flat_map(|s| s.targets.iter())
        .map(|t| {
            vec![
                t.what.clone(),
                t.target.clone(),
                t.measured.clone(),
                match t.met {
                    Some(true) => "met".to_owned(),
                    Some(false) => "**missed**".to_owned(),
                    None => "reported".to_owned(),
                },
            ]
        })
        .collect();
    out.push_str(&table(&["what", "target", "this run", "verdict"], &rows));
    if !failures.is_empty() {
        let _ = writeln!(out, "\nBenchmarks that could not run:\n");
        for f in failures {
            let _ = writeln!(out, "- {f}");
        }
    }
    let _ = writeln!(out);
    for section in sections {
        let _ = writeln!(
            out,
            "## {}\n\n{}\n_Took {:.0} s._\n",
            section.title,
            section.body.trim_end(),
            section.took.as_secs_f64()
        );
    }
    let _ = writeln!(out, "## Machine\n");
    out.push_str(&table(
        &["", ""],
        &[
            vec!["cores (nproc)".into(), machine.cores.to_string()],
            vec!["CPU".into(), machine.cpu_model.clone()],
            vec!["memory".into(), machine.memory.clone()],
            vec!["kernel".into(), machine.kernel.clone()],
            vec!["Envoy".into(), machine.envoy.clone()],
            vec!["wrk".into(), machine.wrk.clone()],
            vec!["rustc".into(), machine.rustc.clone()],
            vec!["date (UTC)".into(), machine.date.clone()],
            vec![
                "bench wall time".into(),
                format!("{:.0} s (builds not included)", wall.as_secs_f64()),
            ],
        ],
    ));
    let _ = writeln!(
        out,
        "\nEverything runs on this one machine, on loopback: the load \
         generator, the upstream, the Envoys, the sidecars, Redis and the fake \
         Scalingo share its cores. Rust that is measured (the filter, the \
         sidecar, the bench with its upstream and the fake) is built with the \
         release profile of the workspace (`opt-level = \"s\"`, LTO)."
    );
    out
}

/// The text of the section `## {title}` of `doc` (from its heading to the
/// next `## ` heading, or the end), if it has one.
pub fn section_text<'a>(doc: &'a str, title: &str) -> Option<&'a str> {
    let heading = format!("## {title}\n");
    let start = if doc.starts_with(&heading) {
        0
    } else {
        doc.find(&format!("\n{heading}"))? + 1
    };
    let rest = &doc[start + heading.len()..];
    let end = rest
        .find("\n## ")
        .map_or(doc.len(), |i| start + heading.len() + i + 1);
    Some(&doc[start..end])
}

/// `doc` with the section `## {title}` replaced by `text` (a whole section,
/// heading included, ending with a blank line); without one, `text` goes
/// before `## Machine`, or at the end. Every other section is left as it is.
pub fn splice(doc: &str, title: &str, text: &str) -> String {
    if let Some(old) = section_text(doc, title) {
        let start = old.as_ptr() as usize - doc.as_ptr() as usize;
        return format!("{}{}{}", &doc[..start], text, &doc[start + old.len()..]);
    }
    if let Some(machine) = section_text(doc, "Machine") {
        let start = machine.as_ptr() as usize - doc.as_ptr() as usize;
        return format!("{}{}{}", &doc[..start], text, &doc[start..]);
    }
    let mut out = doc.to_owned();
    if !out.is_empty() && !out.ends_with("\n\n") {
        out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
    }
    out.push_str(text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_inserts_or_appends_one_section() {
        let doc = "# B\n\n## One\n\na\n\n## Machine\n\nm\n";
        let soak = "## Soak\n\ns\n\n";
        let inserted = splice(doc, "Soak", soak);
        assert_eq!(
            inserted,
            "# B\n\n## One\n\na\n\n## Soak\n\ns\n\n## Machine\n\nm\n"
        );
        assert_eq!(section_text(&inserted, "Soak"), Some(soak));
        let replaced = splice(&inserted, "Soak", "## Soak\n\nt\n\n");
        assert_eq!(
            replaced,
            "# B\n\n## One\n\na\n\n## Soak\n\nt\n\n## Machine\n\nm\n"
        );
        assert_eq!(splice("", "Soak", soak), soak);
        assert_eq!(splice("# B\n", "Soak", soak), "# B\n\n## Soak\n\ns\n\n");
        // A last section runs to the end.
        assert_eq!(
            section_text("## Soak\n\nx\n", "Soak"),
            Some("## Soak\n\nx\n")
        );
    }
}
