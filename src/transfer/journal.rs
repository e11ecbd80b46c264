//! A job's journal: what it is, and each chunk the destination acknowledged, in the crate's
//! append-only log ([`crate::journal`]). Read back, it says where to resume.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::bulk::FailedKey;
use crate::journal::Log;

/// The first line of every job journal.
const HEADER: &str = "edgekv-transfer-journal v1";

/// Which job a journal belongs to: resuming another job's journal is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobId {
    kind: String,
    prefix: String,
    /// The stores' [`KvStore::id`](crate::kv::KvStore::id)s.
    source: String,
    destination: String,
}

impl JobId {
    pub(crate) fn new(kind: &str, prefix: &str, source: String, destination: String) -> Self {
        JobId {
            kind: kind.into(),
            prefix: prefix.into(),
            source,
            destination,
        }
    }
}

/// One chunk done: the destination acknowledged its writes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChunkDone {
    /// Its place in the listing, from 0.
    pub(crate) seq: u64,
    /// The listing's cursor its page was asked at (`None`: the start): the chunks done form a
    /// chain only while each starts where the one before it ended.
    #[serde(default)]
    pub(crate) from: Option<String>,
    /// The listing's cursor after it (`None`: it was the last page).
    pub(crate) next: Option<String>,
    /// Its page's first and last key: a resumed job skips it only on the same page.
    pub(crate) first: Option<String>,
    pub(crate) last: Option<String>,
    /// An import's entries read from the file up to the end of this chunk: a resumed import
    /// reads past them.
    #[serde(default)]
    pub(crate) consumed: u64,
    /// An export's bytes in its file at the end of this chunk, synced: a resumed export cuts
    /// the file back to them (a chunk not journaled may be half written) and goes on.
    #[serde(default)]
    pub(crate) written: u64,
    pub(crate) listed: u64,
    pub(crate) copied: u64,
    pub(crate) skipped: u64,
    pub(crate) bytes: u64,
    pub(crate) failed: Vec<Failed>,
}

/// A key not written, as journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Failed {
    key: String,
    index: u64,
    reason: String,
}

impl From<FailedKey> for Failed {
    fn from(f: FailedKey) -> Self {
        Failed {
            key: f.key,
            index: f.index,
            reason: f.reason,
        }
    }
}

impl From<&Failed> for FailedKey {
    fn from(f: &Failed) -> Self {
        FailedKey {
            key: f.key.clone(),
            index: f.index,
            reason: f.reason.clone(),
            failure: crate::bulk::Failure::Refused,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
enum Step {
    Started(JobId),
    Chunk(ChunkDone),
    Finished,
}

/// Where a job resumes.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    /// The chunks done before the watermark, all of them done: counted as they are.
    pub(crate) before: Vec<ChunkDone>,
    /// The chunks done after it (they finished while an earlier one was in flight): skipped
    /// only if the listing gives the same page again (same first and last key, same count).
    pub(crate) later: BTreeMap<u64, ChunkDone>,
    /// The first chunk not done: the listing resumes there.
    pub(crate) watermark: u64,
    /// The listing's cursor at the watermark (`None`: from the start).
    pub(crate) cursor: Option<String>,
    /// The job ended before: nothing is left to do.
    pub(crate) finished: bool,
}

impl Resume {
    /// Whether the chunks done reach the listing's last page: all is done but recording the
    /// end (the run before was killed in between).
    pub(crate) fn listing_over(&self) -> bool {
        self.before.last().is_some_and(|chunk| chunk.next.is_none())
    }
}

/// An open journal.
pub(crate) struct Journal {
    log: Log<Step>,
    steps: Vec<Step>,
}

impl Journal {
    /// Opens the journal at `path` for `job`, starting it if it is new; another job's journal
    /// is refused.
    pub(crate) fn open(path: &Path, job: &JobId) -> io::Result<Journal> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        let dir = dir.unwrap_or(Path::new("."));
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the journal path names no file",
            )
        })?;
        let (mut log, steps) = Log::open(dir, &name.to_string_lossy(), HEADER)?;
        match steps.first() {
            None => log.append(&[Step::Started(job.clone())])?,
            Some(Step::Started(started)) if started == job => {}
            Some(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is the journal of another job (not a {} of prefix {:?} from {} to {})",
                        path.display(),
                        job.kind,
                        job.prefix,
                        job.source,
                        job.destination
                    ),
                ));
            }
        }
        Ok(Journal { log, steps })
    }

    /// Where the job resumes, from what the journal holds.
    pub(crate) fn resume(&mut self) -> Resume {
        let mut resume = Resume::default();
        let mut done = BTreeMap::new();
        // The latest record of a chunk wins: a chunk redone after a changed listing.
        for step in std::mem::take(&mut self.steps) {
            match step {
                Step::Chunk(chunk) => {
                    done.insert(chunk.seq, chunk);
                }
                Step::Finished => resume.finished = true,
                Step::Started(_) => {}
            }
        }
        while let Some(chunk) = done.remove(&resume.watermark) {
            if chunk.from != resume.cursor {
                // Done in a run whose listing ran differently (keys came or went in between):
                // it is no link of this chain, and a later page is checked against it.
                done.insert(chunk.seq, chunk);
                break;
            }
            resume.cursor = chunk.next.clone();
            resume.watermark += 1;
            let last = chunk.next.is_none();
            resume.before.push(chunk);
            if last {
                // The last page is done: the listing is over.
                break;
            }
        }
        resume.later = done;
        resume
    }

    /// Records a chunk done, on disk before it returns.
    pub(crate) fn chunk_done(&mut self, chunk: ChunkDone) -> io::Result<()> {
        self.log.append(&[Step::Chunk(chunk)])
    }

    /// Records the job finished.
    pub(crate) fn finished(&mut self) -> io::Result<()> {
        self.log.append(&[Step::Finished])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(seq: u64, from: Option<&str>, next: Option<&str>) -> ChunkDone {
        ChunkDone {
            seq,
            from: from.map(str::to_string),
            next: next.map(str::to_string),
            listed: 2,
            copied: 2,
            ..ChunkDone::default()
        }
    }

    #[test]
    fn a_job_resumes_after_its_first_unfinished_chunk_and_knows_the_later_ones() {
        let dir = std::env::temp_dir().join(format!("edgekv-job-{}", fastrand::u64(..)));
        let path = dir.join("copy.journal");
        let job = JobId::new("copy", "p/", "a".into(), "b".into());
        let mut journal = Journal::open(&path, &job).unwrap();
        assert_eq!(journal.resume().watermark, 0);
        // Chunks 0, 1 and 3 done; 2 was in flight when the job stopped.
        for done in [
            chunk(0, None, Some("c1")),
            chunk(1, Some("c1"), Some("c2")),
            chunk(3, Some("c3"), Some("c4")),
        ] {
            journal.chunk_done(done).unwrap();
        }
        drop(journal);
        let resume = Journal::open(&path, &job).unwrap().resume();
        assert_eq!(
            (resume.watermark, resume.cursor.as_deref()),
            (2, Some("c2"))
        );
        assert_eq!(resume.before.len(), 2);
        assert!(resume.later.contains_key(&3) && !resume.finished);

        for other in [
            JobId::new("copy", "q/", "a".into(), "b".into()),
            JobId::new("copy", "p/", "a".into(), "c".into()),
            JobId::new("sync", "p/", "a".into(), "b".into()),
        ] {
            let refused = Journal::open(&path, &other).err().unwrap();
            assert_eq!(refused.kind(), io::ErrorKind::InvalidInput);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Run 1 finished pages 0 and 2, page 1 in flight at its kill; a key came into page 1's
    /// range, so run 2's page 1 ended earlier (at `c1b`), and run 2 was killed before its page
    /// 2. Run 3 must go on at `c1b`: run 1's page 2 started at `c2`, so it is no link of the
    /// chain (resuming after it would skip the key between `c1b` and `c2`).
    #[test]
    fn the_chain_of_chunks_done_breaks_where_a_page_started_elsewhere() {
        let dir = std::env::temp_dir().join(format!("edgekv-job-{}", fastrand::u64(..)));
        let path = dir.join("copy.journal");
        let job = JobId::new("copy", "", "a".into(), "b".into());
        let mut journal = Journal::open(&path, &job).unwrap();
        for done in [
            chunk(0, None, Some("c1")),
            chunk(2, Some("c2"), Some("c3")),
            chunk(1, Some("c1"), Some("c1b")),
        ] {
            journal.chunk_done(done).unwrap();
        }
        drop(journal);
        let resume = Journal::open(&path, &job).unwrap().resume();
        assert_eq!(
            (resume.watermark, resume.cursor.as_deref()),
            (2, Some("c1b"))
        );
        assert_eq!(
            resume.later.len(),
            1,
            "page 2 is checked against the listing"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
