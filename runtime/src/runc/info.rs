//! list, ps, spec, features.

use std::path::Path;

use super::Format;
use crate::oci::{self, Runtime};

/// Columns aligned as Go's tabwriter (min width 12, padding 3) aligns runc's tables.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count() + 3)
                .max()
                .unwrap_or(0)
                .max(12)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == cols {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}", w = widths[c]));
            }
        }
        out.push('\n');
    }
    out
}

pub fn list(rt: &Runtime, format: Format, quiet: bool) -> oci::Result<()> {
    let states: Vec<oci::StateReport> = rt.list()?.iter().map(|c| c.state()).collect();
    if quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(());
    }
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string(&states).expect("states serialize")
        ),
        Format::Table => {
            let mut rows = vec![
                ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
                    .map(String::from)
                    .to_vec(),
            ];
            for s in &states {
                rows.push(vec![
                    s.id.clone(),
                    s.pid.to_string(),
                    s.status.to_string(),
                    s.bundle.display().to_string(),
                    s.created.clone(),
                    s.owner.clone(),
                ]);
            }
            print!("{}", table(&rows));
        }
    }
    Ok(())
}

pub fn ps(rt: &Runtime, id: &str, format: Format, ps_args: &[String]) -> oci::Result<()> {
    let pids = rt.load(id)?.pids()?;
    if format == Format::Json {
        println!("{}", serde_json::to_string(&pids).expect("pids serialize"));
        return Ok(());
    }
    // As runc: the host's ps, keeping the header and the container's rows.
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| oci::Error::io("run ps", e))?;
    if !out.status.success() {
        return Err(oci::Error::io(
            format!("ps {}", args.join(" ")),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| oci::Error::io("read ps output", std::io::Error::other("no PID column")))?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(())
}

pub fn spec(bundle: &Path) -> oci::Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(oci::Error::io(
            format!("write {}", path.display()),
            std::io::Error::other("File config.json exists. Remove it first"),
        ));
    }
    std::fs::write(&path, oci::example::EXAMPLE)
        .map_err(|e| oci::Error::io(format!("write {}", path.display()), e))
}

pub fn features() -> oci::Result<()> {
    use serde::Serialize;
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    oci::features::features()
        .serialize(&mut ser)
        .expect("features serialize");
    println!("{}", String::from_utf8_lossy(&out));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_like_tabwriter() {
        let rows = vec![
            vec!["ID".to_string(), "PID".into(), "OWNER".into()],
            vec!["a-long-container-id".into(), "42".into(), "root".into()],
        ];
        assert_eq!(
            table(&rows),
            "ID                    PID         OWNER\na-long-container-id   42          root\n"
        );
    }
}
