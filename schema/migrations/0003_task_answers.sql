-- Which answer finished a plugin task: a random id written by the one conditional update that
-- moves the task out of `pending`. The rest of that answer's batch (counter, event, merged
-- results) is guarded on it, so a task is recorded once however many answers race, in one
-- round trip to the database.
ALTER TABLE plugin_tasks ADD COLUMN answer_id TEXT;
