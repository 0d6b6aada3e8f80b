//! The content type as an extended attribute of the data file: through `rustix` on Linux;
//! elsewhere "unsupported", so the store keeps its types in sidecar files.

/// Extended attributes through `rustix`, on Linux.
#[cfg(target_os = "linux")]
mod imp {
    use std::fs::File;
    use std::io;

    use rustix::fs::{fgetxattr, fgetxattr_query, fsetxattr, XattrFlags};
    use rustix::io::Errno;

    use super::super::CONTENT_TYPE_XATTR as NAME;

    pub fn set(file: &File, value: &[u8]) -> io::Result<()> {
        fsetxattr(file, NAME, value, XattrFlags::empty()).map_err(io::Error::from)
    }

    /// The attribute's value; `None` if the file has none.
    pub fn get(file: &File) -> io::Result<Option<Vec<u8>>> {
        let mut buf = [0u8; 256];
        match fgetxattr(file, NAME, &mut buf[..]) {
            Ok(n) => Ok(Some(buf[..n].to_vec())),
            Err(Errno::NODATA) => Ok(None),
            Err(Errno::RANGE) => {
                let mut value = vec![0u8; fgetxattr_query(file, NAME)?];
                let n = fgetxattr(file, NAME, &mut value[..])?;
                value.truncate(n);
                Ok(Some(value))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The filesystem (or its mount) has no user extended attributes.
    pub fn unsupported(e: &io::Error) -> bool {
        e.raw_os_error() == Some(Errno::NOTSUP.raw_os_error())
    }

    /// The value does not fit in an attribute on this filesystem.
    pub fn too_big(e: &io::Error) -> bool {
        [Errno::TOOBIG, Errno::RANGE, Errno::NOSPC]
            .iter()
            .any(|x| e.raw_os_error() == Some(x.raw_os_error()))
    }
}

/// Elsewhere the store keeps sidecars.
#[cfg(not(target_os = "linux"))]
mod imp {
    use std::fs::File;
    use std::io;

    pub fn set(_: &File, _: &[u8]) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub fn get(_: &File) -> io::Result<Option<Vec<u8>>> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub fn unsupported(e: &io::Error) -> bool {
        e.kind() == io::ErrorKind::Unsupported
    }

    pub fn too_big(_: &io::Error) -> bool {
        false
    }
}

pub use imp::*;
