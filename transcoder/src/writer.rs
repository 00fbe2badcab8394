//! An output writer that hands full buffers to a writing thread, so that copying the bytes
//! into the kernel (the largest cost of a remux) overlaps with reading and parsing the next
//! input bytes. Memory is bounded: a fixed number of buffers circulate between the threads.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Size of one buffer handed to the writing thread.
pub const BUFFER_SIZE: usize = 1024 * 1024;
/// Buffers in circulation (one being filled, the others queued or being written).
pub const BUFFERS: usize = 3;

/// Buffered writer whose `write` system calls run on a separate thread.
#[derive(Debug)]
pub struct ThreadedWriter {
    current: Vec<u8>,
    allocated: usize,
    to_writer: Option<SyncSender<Vec<u8>>>,
    recycled: Receiver<Vec<u8>>,
    handle: Option<JoinHandle<io::Result<File>>>,
}

impl ThreadedWriter {
    /// Starts the writing thread for `file`.
    pub fn new(file: File) -> Self {
        let (to_writer, from_filler) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
        let (to_filler, recycled) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
        let handle = std::thread::spawn(move || {
            let mut file = file;
            for mut buf in from_filler {
                file.write_all(&buf)?;
                buf.clear();
                // The filler may have finished already; then the buffer is simply dropped.
                let _ = to_filler.send(buf);
            }
            Ok(file)
        });
        Self {
            current: Vec::with_capacity(BUFFER_SIZE),
            allocated: 1,
            to_writer: Some(to_writer),
            recycled,
            handle: Some(handle),
        }
    }

    /// The writing thread's error, after it stopped.
    fn writer_error(&mut self) -> io::Error {
        self.to_writer = None;
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("the output writer thread stopped"),
        }
    }

    fn send_current(&mut self) -> io::Result<()> {
        if self.current.is_empty() {
            return Ok(());
        }
        let next = match self.recycled.try_recv() {
            Ok(buf) => buf,
            Err(_) if self.allocated < BUFFERS => {
                self.allocated += 1;
                Vec::with_capacity(BUFFER_SIZE)
            }
            Err(_) => match self.recycled.recv() {
                Ok(buf) => buf,
                Err(_) => return Err(self.writer_error()),
            },
        };
        let full = std::mem::replace(&mut self.current, next);
        let sent = self.to_writer.as_ref().map(|tx| tx.send(full).is_ok());
        if sent == Some(true) {
            Ok(())
        } else {
            Err(self.writer_error())
        }
    }

    /// Writes what is buffered, waits for the writing thread and returns the file.
    ///
    /// # Errors
    /// The first write error.
    pub fn finish(mut self) -> io::Result<File> {
        self.send_current()?;
        self.to_writer = None;
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => Err(io::Error::other("the output writer thread panicked")),
        }
    }
}

impl Write for ThreadedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BUFFER_SIZE - self.current.len();
        let n = room.min(data.len());
        self.current.extend_from_slice(&data[..n]);
        if self.current.len() == BUFFER_SIZE {
            self.send_current()?;
        }
        Ok(n)
    }

    fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.write(data)?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Hands the current buffer to the writing thread (it does not wait for the write).
    fn flush(&mut self) -> io::Result<()> {
        self.send_current()
    }
}

impl Drop for ThreadedWriter {
    fn drop(&mut self) {
        self.to_writer = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn writes_everything_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut writer = ThreadedWriter::new(File::create(&path).unwrap());
        let mut expected = Vec::new();
        for i in 0..5000u32 {
            let chunk: Vec<u8> = (0..(i % 3000)).map(|j| (i + j) as u8).collect();
            writer.write_all(&chunk).unwrap();
            expected.extend_from_slice(&chunk);
        }
        let big = vec![7u8; 3 * BUFFER_SIZE + 5];
        writer.write_all(&big).unwrap();
        expected.extend_from_slice(&big);
        drop(writer.finish().unwrap());
        let mut written = Vec::new();
        File::open(&path)
            .unwrap()
            .read_to_end(&mut written)
            .unwrap();
        assert!(written == expected);
    }

    #[test]
    fn reports_write_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, b"x").unwrap();
        // A read-only handle cannot be written.
        let mut writer = ThreadedWriter::new(File::open(&path).unwrap());
        let data = vec![1u8; BUFFER_SIZE];
        let mut failed = false;
        for _ in 0..(BUFFERS + 2) {
            if writer.write_all(&data).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed || writer.finish().is_err());
    }
}
