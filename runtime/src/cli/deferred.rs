//! Subcommands whose flags clap builds only when the command line names them.
//!
//! clap's derive builds the whole command tree before parsing: every verb's flags, the
//! `container`, `image` and `network` groups. That was a millisecond of every rbox start,
//! most of it for commands the line does not name. Wrapping a subcommand's arguments (or
//! its group of subcommands) in [`Deferred`] hands clap a builder it runs only on the
//! way into that subcommand; `--help` and parsing are unchanged.

use std::ops::Deref;

use clap::{ArgMatches, Args, Command, Error, FromArgMatches, Subcommand};

/// A subcommand's arguments, or its subcommands, defined on demand (boxed: the enums
/// that hold them stay small).
#[derive(Debug)]
pub struct Deferred<T>(Box<T>);

impl<T> Deferred<T> {
    pub fn into_inner(self) -> T {
        *self.0
    }
}

impl<T> Deref for Deferred<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: FromArgMatches> FromArgMatches for Deferred<T> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, Error> {
        T::from_arg_matches(matches).map(|t| Deferred(Box::new(t)))
    }
    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), Error> {
        self.0.update_from_arg_matches(matches)
    }
}

impl<T: Args> Args for Deferred<T> {
    fn augment_args(cmd: Command) -> Command {
        cmd.defer(|cmd| keeping_about(cmd, T::augment_args))
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        cmd.defer(|cmd| keeping_about(cmd, T::augment_args_for_update))
    }
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
}

impl<T: Subcommand> Subcommand for Deferred<T> {
    fn augment_subcommands(cmd: Command) -> Command {
        cmd.defer(|cmd| keeping_about(cmd, T::augment_subcommands))
    }
    fn augment_subcommands_for_update(cmd: Command) -> Command {
        cmd.defer(|cmd| keeping_about(cmd, T::augment_subcommands_for_update))
    }
    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}

/// `cmd` built by `build`, its description still the subcommand's own: the derive also
/// describes a command by the doc comment of the type it builds from, which eager
/// building overrode with the subcommand's afterwards.
fn keeping_about(cmd: Command, build: fn(Command) -> Command) -> Command {
    let (about, long_about) = (cmd.get_about().cloned(), cmd.get_long_about().cloned());
    let mut cmd = build(cmd);
    if let Some(about) = about {
        cmd = cmd.about(about);
    }
    if let Some(long_about) = long_about {
        cmd = cmd.long_about(long_about);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::cli::Cli;

    #[test]
    fn the_command_tree_is_sound_once_built_in_full() {
        Cli::command().debug_assert();
    }

    #[test]
    fn deferred_flags_parse_and_are_known_to_help() {
        let cli = Cli::try_parse_from(["rbox", "run", "--rm", "--network", "none", "img", "true"])
            .unwrap();
        assert!(format!("{cli:?}").contains("rm: true"), "{cli:?}");
        let err = Cli::try_parse_from(["rbox", "run", "--no-such-flag", "img"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
        let help = Cli::try_parse_from(["rbox", "container", "run", "--help"]).unwrap_err();
        assert!(help.to_string().contains("--network"), "{help}");
        let help = Cli::try_parse_from(["rbox", "network", "create", "--help"]).unwrap_err();
        assert!(help.to_string().contains("--subnet"), "{help}");
    }
}
