-- The portal's own ViewPort tables, exactly as the seed defines them (2.3 and 6.2).

CREATE TABLE IF NOT EXISTS `wp_image_uid` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `image_uid` varchar(255) COLLATE utf8mb4_unicode_ci NOT NULL,
  `image_metadata` text COLLATE utf8mb4_unicode_ci,
  `created_at` timestamp NULL DEFAULT CURRENT_TIMESTAMP,
  `updated_at` timestamp NULL DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `image_uid_index` (`image_uid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `wp_image_guid` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `image_guid` varchar(255) COLLATE utf8mb4_unicode_ci NOT NULL,
  `related_object_type` varchar(255) COLLATE utf8mb4_unicode_ci DEFAULT NULL,
  `related_object_id` bigint(20) unsigned DEFAULT NULL,
  `created_at` timestamp NULL DEFAULT CURRENT_TIMESTAMP,
  `updated_at` timestamp NULL DEFAULT NULL,
  `other_data` text COLLATE utf8mb4_unicode_ci,
  PRIMARY KEY (`id`),
  UNIQUE KEY `guid_index` (`image_guid`),
  KEY `related_object_index` (`related_object_type`,`related_object_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
