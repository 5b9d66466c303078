//! `rbox ps`: Docker's columns and wording ("Up 3 minutes", "Exited (0) 2 seconds ago").

use chrono::{DateTime, Utc};

use crate::engine::ids;
use crate::engine::record::{ContainerRecord, Status};

/// Docker's human-readable duration (go-units `HumanDuration`).
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = d.num_minutes();
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (d.num_seconds() as f64 / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", d.num_hours() / 24 / 365)
}

/// The STATUS column.
pub fn status(rec: &ContainerRecord, now: DateTime<Utc>) -> String {
    let s = &rec.state;
    match s.status {
        Status::Running => format!("Up {}", human_duration(now - s.started_at.unwrap_or(now))),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            s.exit_code,
            human_duration(now - s.finished_at.unwrap_or(now))
        ),
        Status::Created => "Created".into(),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
    }
}

/// The COMMAND column: quoted, cut at 20 characters unless `full`.
pub fn command(rec: &ContainerRecord, full: bool) -> String {
    let cmd = rec.config.argv().join(" ");
    if full || cmd.chars().count() <= 20 {
        return format!("\"{cmd}\"");
    }
    let cut: String = cmd.chars().take(19).collect();
    format!("\"{cut}…\"")
}

/// The PORTS column: the published bindings of a running container.
pub fn ports(rec: &ContainerRecord) -> String {
    crate::engine::ports::column(rec)
}

/// One `--filter KEY=VALUE` of `ps`.
pub fn matches(rec: &ContainerRecord, filter: &str) -> Result<bool, String> {
    let (key, value) = filter
        .split_once('=')
        .ok_or_else(|| format!("invalid filter {filter:?}: expected KEY=VALUE"))?;
    Ok(match key {
        "id" => rec.id.starts_with(value),
        "name" => rec.name.contains(value.trim_start_matches('/')),
        "status" => {
            if ![
                "created",
                "restarting",
                "running",
                "removing",
                "paused",
                "exited",
                "dead",
            ]
            .contains(&value)
            {
                return Err(format!(
                    "invalid filter status={value}: use created, running, exited, ..."
                ));
            }
            rec.state.status.as_str() == value
        }
        "exited" => {
            let code: i32 = value
                .parse()
                .map_err(|_| format!("invalid filter exited={value}: give an exit code"))?;
            rec.state.status == Status::Exited && rec.state.exit_code == code
        }
        "label" => match value.split_once('=') {
            Some((k, v)) => rec.config.labels.get(k).is_some_and(|x| x == v),
            None => rec.config.labels.contains_key(value),
        },
        "ancestor" => {
            rec.options.image == value
                || rec.image.reference == value
                || rec.image.id.contains(value)
        }
        "network" => rec.options.networks.iter().any(|n| n.name == value),
        _ => {
            return Err(format!(
                "invalid filter {key:?}: use id, name, status, exited, label, ancestor or network"
            ));
        }
    })
}

/// A table in Docker's layout: columns padded to their widest cell, three spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        let last = cells.len() - 1;
        for (i, c) in cells.into_iter().enumerate() {
            s.push_str(c);
            if i < last {
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// The rows of `ps` for these containers.
pub fn rows(recs: &[ContainerRecord], no_trunc: bool, now: DateTime<Utc>) -> Vec<Vec<String>> {
    recs.iter()
        .map(|r| {
            vec![
                if no_trunc {
                    r.id.clone()
                } else {
                    ids::short(&r.id).to_string()
                },
                r.options.image.clone(),
                command(r, no_trunc),
                format!("{} ago", human_duration(now - r.created)),
                status(r, now),
                ports(r),
                r.name.clone(),
            ]
        })
        .collect()
}

pub const HEADER: &[&str] = &[
    "CONTAINER ID",
    "IMAGE",
    "COMMAND",
    "CREATED",
    "STATUS",
    "PORTS",
    "NAMES",
];

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn durations_as_docker_words_them() {
        assert_eq!(
            human_duration(Duration::milliseconds(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(Duration::seconds(1)), "1 second");
        assert_eq!(human_duration(Duration::seconds(2)), "2 seconds");
        assert_eq!(human_duration(Duration::seconds(61)), "About a minute");
        assert_eq!(human_duration(Duration::minutes(3)), "3 minutes");
        assert_eq!(human_duration(Duration::minutes(65)), "About an hour");
        assert_eq!(human_duration(Duration::hours(5)), "5 hours");
        assert_eq!(human_duration(Duration::days(3)), "3 days");
        assert_eq!(human_duration(Duration::days(20)), "2 weeks");
        assert_eq!(human_duration(Duration::days(90)), "3 months");
        assert_eq!(human_duration(Duration::days(800)), "2 years");
    }

    #[test]
    fn table_layout() {
        let t = table(&["A", "BB"], &[vec!["xxxx".into(), "y".into()]]);
        assert_eq!(t, "A      BB\nxxxx   y\n");
    }
}
