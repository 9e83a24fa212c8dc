//! An AI agent's workspace in memory: the agent writes a small project,
//! reads it back, and its attempts to climb out of the workspace land
//! inside it.
//!
//! Run with `cargo run --example agent_workspace`.

use anyfs::{FileStorage, FsError, MemoryBackend};

fn main() -> Result<(), FsError> {
    let fs = FileStorage::new(MemoryBackend::new());

    // What an agent does on a coding task.
    fs.create_dir_all("/workspace/src")?;
    fs.write("/workspace/README.md", "# hello\n")?;
    fs.write(
        "/workspace/src/main.rs",
        "fn main() { println!(\"hello\"); }\n",
    )?;
    fs.append("/workspace/README.md", "Prints a greeting.\n")?;
    fs.copy("/workspace/src/main.rs", "/workspace/src/main.rs.bak")?;
    fs.rename("/workspace/src/main.rs.bak", "/workspace/main.rs.orig")?;
    fs.symlink("/workspace/src", "/workspace/code")?;

    println!("workspace after the task:");
    print_tree(&fs, "/workspace", 1)?;

    // Paths are untrusted: traversal and absolute symlinks stay inside.
    fs.write("/workspace/../../../../notes.txt", "written by the agent")?;
    fs.symlink("/../../../../root", "/workspace/escape")?;
    println!();
    println!("attempted escapes:");
    println!(
        "  '/workspace/../../../../notes.txt' became {:?}",
        fs.canonicalize("/workspace/../../../../notes.txt")?
    );
    match fs.read("/workspace/escape/.ssh/id_rsa") {
        Err(e) => println!("  reading through '/workspace/escape' -> {e}"),
        Ok(_) => unreachable!("there is no /root in a new workspace"),
    }
    match fs.write("/workspace/bad\0name", "x") {
        Err(e) => println!("  a NUL byte in a name -> {e}"),
        Ok(()) => unreachable!("NUL is never accepted"),
    }

    let text = fs.read_to_string("/workspace/code/main.rs")?;
    println!();
    println!(
        "/workspace/code/main.rs (through the symlink): {}",
        text.trim()
    );
    Ok(())
}

fn print_tree(fs: &FileStorage<MemoryBackend>, dir: &str, depth: usize) -> Result<(), FsError> {
    let mut entries = fs.read_dir(dir)?.collect_entries()?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for entry in entries {
        let path = entry.path.to_string_lossy().into_owned();
        let meta = fs.symlink_metadata(&path)?;
        let indent = "  ".repeat(depth);
        if meta.is_symlink() {
            println!(
                "{indent}{} -> {}",
                entry.name.to_string_lossy(),
                fs.read_link(&path)?.display()
            );
        } else if meta.is_dir() {
            println!("{indent}{}/", entry.name.to_string_lossy());
            print_tree(fs, &path, depth + 1)?;
        } else {
            println!(
                "{indent}{} ({} bytes)",
                entry.name.to_string_lossy(),
                meta.len()
            );
        }
    }
    Ok(())
}
