/*M!999999\- enable the sandbox mode */ 
-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)
--
-- Host: 127.0.0.1    Database: dbispconfig
-- ------------------------------------------------------
-- Server version	10.11.19-MariaDB-0+deb12u1

/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!40101 SET @OLD_CHARACTER_SET_RESULTS=@@CHARACTER_SET_RESULTS */;
/*!40101 SET @OLD_COLLATION_CONNECTION=@@COLLATION_CONNECTION */;
/*!40101 SET NAMES utf8mb4 */;
/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;
/*!40103 SET TIME_ZONE='+00:00' */;
/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;
/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;
/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;
/*!40111 SET @OLD_SQL_NOTES=@@SQL_NOTES, SQL_NOTES=0 */;

--
-- Table structure for table `mail_user`
--

DROP TABLE IF EXISTS `mail_user`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
/*!40101 SET character_set_client = utf8mb4 */;
CREATE TABLE `mail_user` (
  `mailuser_id` int(11) unsigned NOT NULL AUTO_INCREMENT,
  `sys_userid` int(11) unsigned NOT NULL DEFAULT 0,
  `sys_groupid` int(11) unsigned NOT NULL DEFAULT 0,
  `sys_perm_user` varchar(5) NOT NULL DEFAULT '',
  `sys_perm_group` varchar(5) NOT NULL DEFAULT '',
  `sys_perm_other` varchar(5) NOT NULL DEFAULT '',
  `server_id` int(11) unsigned NOT NULL DEFAULT 0,
  `email` varchar(255) NOT NULL DEFAULT '',
  `login` varchar(255) NOT NULL DEFAULT '',
  `password` varchar(255) NOT NULL DEFAULT '',
  `name` varchar(255) NOT NULL DEFAULT '',
  `uid` int(11) NOT NULL DEFAULT 5000,
  `gid` int(11) NOT NULL DEFAULT 5000,
  `maildir` varchar(255) NOT NULL DEFAULT '',
  `maildir_format` varchar(255) NOT NULL DEFAULT 'maildir',
  `quota` bigint(20) NOT NULL DEFAULT -1,
  `cc` varchar(255) NOT NULL DEFAULT '',
  `homedir` varchar(255) NOT NULL DEFAULT '',
  `autoresponder` enum('n','y') NOT NULL DEFAULT 'n',
  `autoresponder_start_date` datetime DEFAULT NULL,
  `autoresponder_subject` varchar(255) NOT NULL DEFAULT 'Out of office reply',
  `autoresponder_text` mediumtext DEFAULT NULL,
  `postfix` enum('n','y') NOT NULL DEFAULT 'y',
  `access` enum('n','y') NOT NULL DEFAULT 'y',
  `disableimap` enum('n','y') NOT NULL DEFAULT 'n',
  `disablepop3` enum('n','y') NOT NULL DEFAULT 'n',
  `disablesmtp` enum('n','y') NOT NULL DEFAULT 'n',
  `disablesieve-filter` enum('n','y') NOT NULL DEFAULT 'n',
  `backup_copies` int(11) NOT NULL DEFAULT 1,
  PRIMARY KEY (`mailuser_id`),
  KEY `server_id` (`server_id`,`email`),
  KEY `email_access` (`email`,`access`)
) ENGINE=MyISAM AUTO_INCREMENT=12348 DEFAULT CHARSET=utf8mb3 COLLATE=utf8mb3_general_ci;
/*!40101 SET character_set_client = @saved_cs_client */;

--
-- Dumping data for table `mail_user`
--

LOCK TABLES `mail_user` WRITE;
/*!40000 ALTER TABLE `mail_user` DISABLE KEYS */;
INSERT INTO `mail_user` (`mailuser_id`, `sys_userid`, `sys_groupid`, `sys_perm_user`, `sys_perm_group`, `sys_perm_other`, `server_id`, `email`, `login`, `password`, `name`, `uid`, `gid`, `maildir`, `maildir_format`, `quota`, `cc`, `homedir`, `autoresponder`, `autoresponder_start_date`, `autoresponder_subject`, `autoresponder_text`, `postfix`, `access`, `disableimap`, `disablepop3`, `disablesmtp`, `disablesieve-filter`, `backup_copies`) VALUES (12345,1,1,'riud','riud','',1,'shop@example.com','shop@example.com','$6$rounds=5000$abc$notarealhash','Shop',5000,5000,'/var/vmail/example.com/shop','maildir',-1,'','','n',NULL,'Out of office reply',NULL,'y','y','n','n','n','n',1);
INSERT INTO `mail_user` (`mailuser_id`, `sys_userid`, `sys_groupid`, `sys_perm_user`, `sys_perm_group`, `sys_perm_other`, `server_id`, `email`, `login`, `password`, `name`, `uid`, `gid`, `maildir`, `maildir_format`, `quota`, `cc`, `homedir`, `autoresponder`, `autoresponder_start_date`, `autoresponder_subject`, `autoresponder_text`, `postfix`, `access`, `disableimap`, `disablepop3`, `disablesmtp`, `disablesieve-filter`, `backup_copies`) VALUES (12346,1,1,'riud','riud','',1,'info@example.com','info','$6$x','Info; \"Desk\"',5000,5000,'/var/vmail/example.com/info','maildir',-1,'','','n',NULL,'Out of office reply','Out of office;\nINSERT INTO `mail_user_ip_restriction` VALUES (9,12346,\'6.6.6.6\',\'w\',\'\');\n-- back Monday \\o/','y','y','n','n','n','n',1);
INSERT INTO `mail_user` (`mailuser_id`, `sys_userid`, `sys_groupid`, `sys_perm_user`, `sys_perm_group`, `sys_perm_other`, `server_id`, `email`, `login`, `password`, `name`, `uid`, `gid`, `maildir`, `maildir_format`, `quota`, `cc`, `homedir`, `autoresponder`, `autoresponder_start_date`, `autoresponder_subject`, `autoresponder_text`, `postfix`, `access`, `disableimap`, `disablepop3`, `disablesmtp`, `disablesieve-filter`, `backup_copies`) VALUES (12347,1,1,'riud','riud','',1,'o\'brien@example.org','o\'brien@example.org','$6$y','O\'Brien',5000,5000,'/var/vmail/example.org/obrien','maildir',-1,'','','n',NULL,'Out of office reply','','y','y','n','n','n','n',1);
/*!40000 ALTER TABLE `mail_user` ENABLE KEYS */;
UNLOCK TABLES;

--
-- Table structure for table `mail_user_ip_restriction`
--

DROP TABLE IF EXISTS `mail_user_ip_restriction`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
/*!40101 SET character_set_client = utf8mb4 */;
CREATE TABLE `mail_user_ip_restriction` (
  `restriction_id` int(11) unsigned NOT NULL AUTO_INCREMENT,
  `mailuser_id` int(11) unsigned NOT NULL DEFAULT 0,
  `ip` varchar(50) NOT NULL DEFAULT '',
  `mode` enum('w','b') NOT NULL DEFAULT 'w',
  `service` varchar(10) NOT NULL DEFAULT '',
  PRIMARY KEY (`restriction_id`),
  KEY `ident` (`mailuser_id`,`mode`,`service`,`ip`)
) ENGINE=MyISAM AUTO_INCREMENT=7 DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
/*!40101 SET character_set_client = @saved_cs_client */;

--
-- Dumping data for table `mail_user_ip_restriction`
--

LOCK TABLES `mail_user_ip_restriction` WRITE;
/*!40000 ALTER TABLE `mail_user_ip_restriction` DISABLE KEYS */;
INSERT INTO `mail_user_ip_restriction` (`restriction_id`, `mailuser_id`, `ip`, `mode`, `service`) VALUES (1,12345,'10.0.0.101','w','smtp');
INSERT INTO `mail_user_ip_restriction` (`restriction_id`, `mailuser_id`, `ip`, `mode`, `service`) VALUES (2,12345,'none','w','pop3');
INSERT INTO `mail_user_ip_restriction` (`restriction_id`, `mailuser_id`, `ip`, `mode`, `service`) VALUES (3,12346,'123.234.123.234','b','');
INSERT INTO `mail_user_ip_restriction` (`restriction_id`, `mailuser_id`, `ip`, `mode`, `service`) VALUES (4,12346,'123.234.123.235','b','smtp');
INSERT INTO `mail_user_ip_restriction` (`restriction_id`, `mailuser_id`, `ip`, `mode`, `service`) VALUES (5,12345,'2001:db8::101','w','smtp');
INSERT INTO `mail_user_ip_restriction` (`restriction_id`, `mailuser_id`, `ip`, `mode`, `service`) VALUES (6,12347,'192.0.2.0/24','w','imap');
/*!40000 ALTER TABLE `mail_user_ip_restriction` ENABLE KEYS */;
UNLOCK TABLES;

--
-- Table structure for table `sys_log`
--

DROP TABLE IF EXISTS `sys_log`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
/*!40101 SET character_set_client = utf8mb4 */;
CREATE TABLE `sys_log` (
  `syslog_id` int(10) unsigned NOT NULL AUTO_INCREMENT,
  `message` text DEFAULT NULL,
  PRIMARY KEY (`syslog_id`)
) ENGINE=InnoDB AUTO_INCREMENT=3 DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
/*!40101 SET character_set_client = @saved_cs_client */;

--
-- Dumping data for table `sys_log`
--

LOCK TABLES `sys_log` WRITE;
/*!40000 ALTER TABLE `sys_log` DISABLE KEYS */;
INSERT INTO `sys_log` (`syslog_id`, `message`) VALUES (1,'INSERT INTO `mail_user_ip_restriction` VALUES (1,1,\'x\',\'w\',\'\');');
INSERT INTO `sys_log` (`syslog_id`, `message`) VALUES (2,'it\'s a \'quote\' \\');
/*!40000 ALTER TABLE `sys_log` ENABLE KEYS */;
UNLOCK TABLES;
/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;

/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;
/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;
/*!40014 SET UNIQUE_CHECKS=@OLD_UNIQUE_CHECKS */;
/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;
/*!40101 SET CHARACTER_SET_RESULTS=@OLD_CHARACTER_SET_RESULTS */;
/*!40101 SET COLLATION_CONNECTION=@OLD_COLLATION_CONNECTION */;
/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;

-- Dump completed
