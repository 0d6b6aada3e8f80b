-- The pipeline's own bookkeeping: the post each job published. Its primary key makes a
-- publish idempotent (a second run of the same job finds the row and writes nothing), and
-- the unique post_name makes two concurrent publishes that wish the same slug take
-- different ones (`-2`, `-3`…), which wp_posts, having no unique key on post_name, cannot.

CREATE TABLE IF NOT EXISTS `k8or_publish_job` (
  `job_id` char(36) COLLATE utf8mb4_unicode_ci NOT NULL,
  `post_name` varchar(200) COLLATE utf8mb4_unicode_520_ci DEFAULT NULL,
  `post_id` bigint(20) unsigned DEFAULT NULL,
  `image_guid` varchar(255) COLLATE utf8mb4_unicode_ci DEFAULT NULL,
  `created_at` datetime NOT NULL,
  PRIMARY KEY (`job_id`),
  UNIQUE KEY `post_name` (`post_name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
