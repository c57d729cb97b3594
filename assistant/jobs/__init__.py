"""Work that follows reception: series completion now; the job queue and outbox later."""
