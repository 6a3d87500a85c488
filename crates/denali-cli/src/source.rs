//! Turns the image options (IMAGE, --example, --flat) into a parsed image, with the name that
//! error messages use for it.

use std::path::Path;

use denali_kernel::Image;

use crate::args::ImageArgs;
use crate::error::Failure;

/// A parsed image and what to call it in messages: its path, or `example NAME`.
pub struct Source {
    pub image: Image,
    pub name: String,
}

pub fn load(args: &ImageArgs) -> Result<Source, Failure> {
    if let Some(name) = &args.example {
        let example = denali_examples::find(name).ok_or_else(|| {
            let known: Vec<&str> =
                denali_examples::ALL.iter().chain(denali_examples::DEVICES).map(|e| e.name).collect();
            Failure::input(format!("unknown example '{name}' (the examples are: {})", known.join(", ")))
        })?;
        let label = format!("example {name}");
        let image = Image::from_elf(example.elf).map_err(|e| Failure::input(format!("{label}: {e}")))?;
        return Ok(Source { image, name: label });
    }
    if let Some(path) = &args.flat {
        let data = read(path)?;
        // clap requires --load with --flat; a missing one is still an error, never a panic.
        let load = args.load.ok_or_else(|| Failure::input("--flat needs --load ADDR"))?;
        let image =
            Image::flat(&data, load, args.entry).map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
        return Ok(Source { image, name: path.display().to_string() });
    }
    let path = args.image.as_deref().ok_or_else(|| Failure::input("no image given (IMAGE, --example or --flat)"))?;
    let data = read(path)?;
    let image = Image::from_elf(&data).map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
    Ok(Source { image, name: path.display().to_string() })
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::input(format!("{}: cannot read: {}", path.display(), io_reason(&e))))
}

/// The OS's reason without Rust's " (os error N)" suffix.
pub fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}
