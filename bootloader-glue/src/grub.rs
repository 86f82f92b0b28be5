//! The `grub.cfg` fragment that boots the recovery while an update
//! instruction is on `cfg`: GRUB finds the file system labelled `cfg`,
//! tests for `update/instruction` (and, where GRUB cannot read `cfg`, the
//! `reimage_update` flag in its environment block), and makes the recovery
//! entry the default. It also counts the boots of a new system on trial:
//! `reimage_trial` (boots left) in the environment block on `cfg` (or the
//! one named with `--grubenv`), one less on each boot of the system with
//! `save_env`; at 0 (or a value it cannot count down) the recovery is
//! booted, which restores the last good image. A boot that goes to the
//! recovery for another reason (an instruction, a one-shot flag left set
//! by a power cut) is not counted: the recovery, seeing boots left, takes
//! the flag for a stale one instead of restoring.

/// Where the recovery's kernel and initramfs are, and what it boots with.
pub struct GrubConfig {
    /// File system label of the partition holding kernel and initramfs.
    pub recovery_label: String,
    /// File system label of the cfg partition.
    pub cfg_label: String,
    /// A GRUB environment block elsewhere: (file system label, path).
    pub grubenv: Option<(String, String)>,
    pub kernel: String,
    pub initrd: String,
    pub cmdline: String,
}

impl Default for GrubConfig {
    fn default() -> GrubConfig {
        GrubConfig {
            recovery_label: "recovery".into(),
            cfg_label: "cfg".into(),
            grubenv: None,
            kernel: "/vmlinuz".into(),
            initrd: "/initramfs.img".into(),
            cmdline: "console=ttyS0 panic=-1".into(),
        }
    }
}

impl GrubConfig {
    pub fn fragment(&self) -> String {
        let counter = formats::trial::GRUB_COUNTER;
        let countdown: String = (1..=formats::trial::MAX_BOOTS)
            .rev()
            .map(|n| {
                format!(
                    "  elif [ \"${counter}\" = {n} ]; then\n    set {counter}={}\n",
                    n - 1
                )
            })
            .collect();
        format!(
            r#"# reimage: boot the recovery while an update instruction is on cfg.
insmod part_gpt
insmod ext2
insmod test
insmod loadenv
search --no-floppy --label {cfg_label} --set=reimage_cfg
if [ -s "$prefix/grubenv" ]; then
  load_env reimage_update
fi
if [ -n "$reimage_cfg" ]; then
  set reimage_counter="($reimage_cfg)/grubenv"
  if [ -s "($reimage_cfg)/grubenv" ]; then
    load_env -f "($reimage_cfg)/grubenv" reimage_update {counter}
  fi
  if [ -f "($reimage_cfg)/update/instruction" ]; then
    set reimage_update=1
  fi
fi
{grubenv}# A new system on trial: one boot less; none left, the recovery restores.
# A boot that goes to the recovery anyway (an instruction, a one-shot flag
# left set) is not a boot of the new system: it does not count.
if [ -n "${counter}" ]; then
  if [ "$reimage_update" = 1 ]; then
    echo "reimage: to the recovery: not a trial boot"
{countdown}  else
    set reimage_update=1
  fi
  save_env -f "$reimage_counter" {counter}
fi
if [ "$reimage_update" = 1 ]; then
  set default=reimage-recovery
  set timeout=0
fi
menuentry "Recovery: install the staged update" --id reimage-recovery {{
  search --no-floppy --label {label} --set=root
  echo "reimage: booting the recovery"
  linux {kernel} {cmdline}
  initrd {initrd}
}}
"#,
            label = self.recovery_label,
            cfg_label = self.cfg_label,
            grubenv = match &self.grubenv {
                None => String::new(),
                Some((label, path)) => format!(
                    "search --no-floppy --label {label} --set=reimage_env\n\
                     if [ -n \"$reimage_env\" ]; then\n  \
                       set reimage_counter=\"($reimage_env){path}\"\n  \
                       if [ -s \"($reimage_env){path}\" ]; then\n    \
                         load_env -f \"($reimage_env){path}\" reimage_update {counter}\n  \
                       fi\n\
                     fi\n"
                ),
            },
            kernel = self.kernel,
            cmdline = self.cmdline,
            initrd = self.initrd
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_fragment_is_the_one_printed() {
        assert_eq!(
            crate::documented_block("`bootloader-glue grub-config` prints the fragment:"),
            GrubConfig::default().fragment()
        );
    }

    #[test]
    fn the_fragment_tests_for_the_instruction_and_names_the_entry() {
        let text = GrubConfig::default().fragment();
        assert!(text.contains(r#"[ -f "($reimage_cfg)/update/instruction" ]"#));
        assert!(text.contains("--id reimage-recovery"));
        assert!(text.contains("linux /vmlinuz console=ttyS0 panic=-1"));
    }

    #[test]
    fn the_fragment_counts_every_trial_boot_down_and_saves_it() {
        let text = GrubConfig::default().fragment();
        for n in 1..=formats::trial::MAX_BOOTS {
            assert!(
                text.contains(&format!(
                    "[ \"$reimage_trial\" = {n} ]; then\n    set reimage_trial={}\n",
                    n - 1
                )),
                "{n}: {text}"
            );
        }
        assert!(text.contains("  else\n    set reimage_update=1\n"));
        assert!(text.contains("  elif [ \"$reimage_trial\" = 9 ]; then\n"));
        assert!(text.contains("save_env -f \"$reimage_counter\" reimage_trial"));
        let env = GrubConfig {
            grubenv: Some(("recovery".into(), "/grubenv".into())),
            ..GrubConfig::default()
        }
        .fragment();
        assert!(env.contains("set reimage_counter=\"($reimage_env)/grubenv\""));
    }

    /// With one trial boot left and a one-shot flag left set (a power cut
    /// between removing the instruction and clearing the flag), the boot
    /// the flag sends to the recovery must leave the count alone: counted,
    /// the recovery would read 0 left and restore over a new system that
    /// never had its boot.
    #[test]
    fn a_boot_sent_to_the_recovery_is_not_a_trial_boot() {
        let text = GrubConfig::default().fragment();
        let trial = text
            .split("if [ -n \"$reimage_trial\" ]; then\n")
            .nth(1)
            .expect("the trial block");
        assert!(
            trial.starts_with(
                "  if [ \"$reimage_update\" = 1 ]; then\n    \
                 echo \"reimage: to the recovery: not a trial boot\"\n  \
                 elif [ \"$reimage_trial\" = 9 ]; then\n"
            ),
            "the flag is not the first test of the trial block:\n{trial}"
        );
        // The flag and the instruction are known before the count.
        let count = text.find("if [ -n \"$reimage_trial\" ]").unwrap();
        for before in [
            "load_env -f \"($reimage_cfg)/grubenv\"",
            "/update/instruction\" ]",
        ] {
            assert!(text.find(before).unwrap() < count, "{before}");
        }
    }
}
