//! Files the CLI writes that hold customers' data (exports, import rejects): readable by their
//! owner only (mode 0600), never written through a symbolic link another user left in the way,
//! never silently over an existing file.

use std::{fs::File, io, path::Path};

/// Creates `path` for writing, mode 0600. Refuses (`AlreadyExists`) when anything is there,
/// a symbolic link included (`O_CREAT | O_EXCL` does not follow one); with `replace`, what is
/// there is removed first (a link itself, never its target).
pub fn create_private(path: &Path, replace: bool) -> io::Result<File> {
    if replace && std::fs::symlink_metadata(path).is_ok() {
        std::fs::remove_file(path)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection").
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A CSV cell as a spreadsheet must show it: a cell a spreadsheet would run as a formula (a
/// name like `=HYPERLINK(…)`) gets a leading `'`. The import takes that `'` off again, so an
/// export imports as the same customers.
pub fn neutralise_cell(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(FORMULA_STARTS) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// The cell as it was before [`neutralise_cell`].
pub fn restore_cell(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) => rest,
        _ => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_restored() {
        for cell in [
            "=1+1",
            "+1",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "=HYPERLINK(\"x\")",
        ] {
            let out = neutralise_cell(cell);
            assert!(out.starts_with('\''), "{cell:?}");
            assert_eq!(restore_cell(&out), cell);
        }
        for cell in ["Ann", "o'Neil", "'quoted", "a=b", ""] {
            assert_eq!(neutralise_cell(cell), cell);
            assert_eq!(restore_cell(cell), cell);
        }
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600_and_never_follow_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("latchkey-files-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.csv");
        create_private(&path, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            create_private(&path, false).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        let target = dir.join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.join("link.csv");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create_private(&link, false).is_err());
        create_private(&link, true).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
