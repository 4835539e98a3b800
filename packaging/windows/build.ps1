#!/usr/bin/env pwsh
# hvdesk-VERSION-windows-x64-setup.exe in dist\, on Windows (a CI runner or a PC):
#   pwsh packaging/windows/build.ps1
# It needs Python 3.11 or newer (`python` on PATH; $env:PYTHON overrides) and Inno Setup 6
# (`choco install innosetup`, or its installer). QEMU itself is the user's. Steps: a build venv,
# the wheel installed into it, the icon, the PyInstaller onedir bundle (packaging/hvdesk.spec), a
# smoke test of its executable, then the installer (packaging/windows/hvdesk.iss).
$ErrorActionPreference = "Stop"
Set-StrictMode -Version Latest
Set-Location (Join-Path $PSScriptRoot "..\..")

function Step { Write-Host "build.ps1: $args" }
function Run {
    # A native command, failing the build when it fails (PowerShell does not, by itself).
    $exe, $rest = $args
    & $exe @rest
    if ($LASTEXITCODE -ne 0) { throw "$exe failed (exit code $LASTEXITCODE)" }
}

$python = if ($env:PYTHON) { $env:PYTHON } else { "python" }
$pyinstaller = (Select-String -Path packaging/build.sh -Pattern 'pyinstaller==[0-9.]+').Matches[0].Value  # as Linux

Step "build venv, wheel"
Remove-Item -Recurse -Force build/windows -ErrorAction SilentlyContinue
New-Item -ItemType Directory -Force build/windows, dist | Out-Null
$venv = ".venv-build-windows"
if (-not (Test-Path "$venv/Scripts/python.exe")) { Run $python -m venv $venv }
$py = "$venv/Scripts/python.exe"
Run $py -m pip install -q --upgrade pip build $pyinstaller pillow
Run $py -m build -q --wheel --outdir build/windows/wheel .
Run $py -m pip install -q --force-reinstall (Get-ChildItem build/windows/wheel/hvdesk-*.whl).FullName
$version = (& $py -c "import hvdesk; print(hvdesk.__version__)").Trim()

Step "icon (from resources/icons/hvdesk.svg)"
Run $py packaging/render_icon.py build/windows/hvdesk.png 256
Run $py -c "from PIL import Image; Image.open('build/windows/hvdesk.png').save('build/windows/hvdesk.ico', sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])"
$icon = (Resolve-Path build/windows/hvdesk.ico).Path

Step "bundle (PyInstaller onedir)"
$env:HVDESK_ICON = $icon
Run "$venv/Scripts/pyinstaller.exe" --noconfirm --log-level WARN --distpath build/windows/dist `
    --workpath build/windows/work packaging/hvdesk.spec
$bundle = (Resolve-Path build/windows/dist/hvdesk).Path

Step "smoke test of the bundle's own executable"
$said = & "$bundle/hvdesk.exe" --version
if ($LASTEXITCODE -ne 0 -or "$said" -notmatch "^hvdesk $([regex]::Escape($version))") {
    throw "smoke test: hvdesk.exe --version said '$said'"
}

Step "installer (Inno Setup)"
$found = Get-Command iscc.exe -ErrorAction SilentlyContinue
$iscc = if ($found) { $found.Source } else { "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" }
Run $iscc /Qp "/DAppVersion=$version" "/DBundleDir=$bundle" "/DIconFile=$icon" "/O$((Resolve-Path dist).Path)" `
    packaging/windows/hvdesk.iss
Get-Item "dist/hvdesk-$version-windows-x64-setup.exe"
