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
/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;
/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;
/*!40111 SET @OLD_SQL_NOTES=@@SQL_NOTES, SQL_NOTES=0 */;

--
-- Dumping data for table `mail_user`
--

LOCK TABLES `mail_user` WRITE;
/*!40000 ALTER TABLE `mail_user` DISABLE KEYS */;
INSERT INTO `mail_user` VALUES
(12345,1,1,'riud','riud','',1,'shop@example.com','shop@example.com','$6$rounds=5000$abc$notarealhash','Shop',5000,5000,'/var/vmail/example.com/shop','maildir',-1,'','','n',NULL,'Out of office reply',NULL,'y','y','n','n','n','n',1),
(12346,1,1,'riud','riud','',1,'info@example.com','info','$6$x','Info; \"Desk\"',5000,5000,'/var/vmail/example.com/info','maildir',-1,'','','n',NULL,'Out of office reply','Out of office;\nINSERT INTO `mail_user_ip_restriction` VALUES (9,12346,\'6.6.6.6\',\'w\',\'\');\n-- back Monday \\o/','y','y','n','n','n','n',1),
(12347,1,1,'riud','riud','',1,'o\'brien@example.org','o\'brien@example.org','$6$y','O\'Brien',5000,5000,'/var/vmail/example.org/obrien','maildir',-1,'','','n',NULL,'Out of office reply','','y','y','n','n','n','n',1);
/*!40000 ALTER TABLE `mail_user` ENABLE KEYS */;
UNLOCK TABLES;

--
-- Dumping data for table `mail_user_ip_restriction`
--

LOCK TABLES `mail_user_ip_restriction` WRITE;
/*!40000 ALTER TABLE `mail_user_ip_restriction` DISABLE KEYS */;
INSERT INTO `mail_user_ip_restriction` VALUES
(1,12345,'10.0.0.101','w','smtp'),
(2,12345,'none','w','pop3'),
(3,12346,'123.234.123.234','b',''),
(4,12346,'123.234.123.235','b','smtp'),
(5,12345,'2001:db8::101','w','smtp'),
(6,12347,'192.0.2.0/24','w','imap');
/*!40000 ALTER TABLE `mail_user_ip_restriction` ENABLE KEYS */;
UNLOCK TABLES;
/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;

/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;
/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;
/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;
/*!40101 SET CHARACTER_SET_RESULTS=@OLD_CHARACTER_SET_RESULTS */;
/*!40101 SET COLLATION_CONNECTION=@OLD_COLLATION_CONNECTION */;
/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;

-- Dump completed
