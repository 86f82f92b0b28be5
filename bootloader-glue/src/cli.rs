//! The command line. So far: `unlock`.

use std::path::PathBuf;

const USAGE: &str = "\
usage:
  bootloader-glue unlock [--cfg DIR]
      clears the update lock the recovery set after repeated failures
      (DIR: where the cfg partition is mounted, default /cfg)
";

pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cfg = PathBuf::from("/cfg");
    let mut iter = args.iter();
    let command = iter.next().map(String::as_str);
    while let Some(arg) = iter.next() {
        match (arg.as_str(), iter.next()) {
            ("--cfg", Some(dir)) => cfg = PathBuf::from(dir),
            _ => {
                eprint!("bootloader-glue: unexpected {arg:?}\n{USAGE}");
                return 2;
            }
        }
    }
    match command {
        Some("unlock") => match crate::request::unlock(&cfg) {
            Ok(true) => {
                println!("update lock cleared: the next instruction gets its full attempts");
                0
            }
            Ok(false) => {
                println!("no update lock was set");
                0
            }
            Err(e) => {
                eprintln!("bootloader-glue: {e}");
                1
            }
        },
        _ => {
            eprint!("{USAGE}");
            2
        }
    }
}
