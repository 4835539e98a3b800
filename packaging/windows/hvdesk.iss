; hvdesk's Windows installer (Inno Setup 6): the PyInstaller onedir bundle (packaging/hvdesk.spec),
; a Start-menu shortcut and an uninstaller. packaging/windows/build.ps1 builds the bundle and the
; icon, then runs:
;   iscc /DAppVersion=VERSION /DBundleDir=BUNDLE /DIconFile=ICO /ODIST packaging\windows\hvdesk.iss
; The version is hvdesk.__version__, passed in: never written here. QEMU is the user's to install
; (qemu.org's Windows builds); hvdesk finds it on PATH, in C:\Program Files\qemu or through HVDESK_QEMU_DIR. Uninstalling
; removes the program folder only: the user's VMs (%LOCALAPPDATA%\hvdesk, or HVDESK_HOME) stay.

#ifndef AppVersion
  #error Give the version: iscc /DAppVersion=X.Y.Z (build.ps1 passes hvdesk.__version__)
#endif
#ifndef BundleDir
  #error Give the PyInstaller bundle folder: iscc /DBundleDir=...\hvdesk (build.ps1 does)
#endif
#ifndef IconFile
  #error Give the icon: iscc /DIconFile=...\hvdesk.ico (build.ps1 renders it from resources\icons\hvdesk.svg)
#endif

[Setup]
; Fixed for ever: Windows knows an installed hvdesk by it (upgrades, the uninstaller). "{{" is a literal "{".
AppId={{122EE6CF-D59F-4D75-913C-0171BA87D16A}
AppName=hvdesk
AppVersion={#AppVersion}
AppVerName=hvdesk {#AppVersion}
AppPublisher=The hvdesk developers
AppPublisherURL=https://github.com/hvdesk/hvdesk
DefaultDirName={autopf}\hvdesk
DefaultGroupName=hvdesk
DisableProgramGroupPage=yes
; Per-user or for all users, as the person installing chooses.
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
LicenseFile=..\debian\copyright
SetupIconFile={#IconFile}
UninstallDisplayIcon={app}\hvdesk.exe
OutputBaseFilename=hvdesk-{#AppVersion}-windows-x64-setup
Compression=lzma2
SolidCompression=yes
WizardStyle=modern

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\hvdesk"; Filename: "{app}\hvdesk.exe"; IconFilename: "{app}\hvdesk.exe"; Comment: "Manage and run QEMU virtual machines"
Name: "{group}\Uninstall hvdesk"; Filename: "{uninstallexe}"

[Run]
Filename: "{app}\hvdesk.exe"; Description: "Start hvdesk"; Flags: nowait postinstall skipifsilent
